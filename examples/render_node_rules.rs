//! Renders the node_exporter compatibility recording rules from the mapping table
//! (`src/nodemetrics/table.rs`): prints them, or with `--write` rewrites
//! `deploy/prometheus/rules/windows-node-exporter-compat.rules.yml`.

use windows_exporter_proxy::nodemetrics::table::rules_yaml;

const RULES: &str = "deploy/prometheus/rules/windows-node-exporter-compat.rules.yml";

fn main() {
    let rules = rules_yaml();
    if std::env::args().any(|a| a == "--write") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES);
        std::fs::write(&path, rules).expect("write the rules file");
        println!("wrote {}", path.display());
    } else {
        print!("{rules}");
    }
}
