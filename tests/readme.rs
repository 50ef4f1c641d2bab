//! The README's configuration table says what the binary does: every variable `--help` lists is
//! in the table with the same default, and the table names no variable the binary does not read.

mod support;

use std::collections::BTreeMap;

fn readme_table() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            (name.starts_with("PROXY_") || name.starts_with("KUBERNETES_") || name == "RUST_LOG").then(|| {
                let default = cells[2].trim_matches('`');
                (name.to_owned(), default.to_owned())
            })
        })
        .collect()
}

async fn help_table() -> BTreeMap<String, String> {
    let output = support::run_to_exit(&["--help"], &[]).await;
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            if !(name.starts_with("PROXY_") || name.starts_with("KUBERNETES_") || name == "RUST_LOG") {
                return None;
            }
            let default = line.rsplit_once('(')?.1.trim_end_matches(')');
            Some((name.to_owned(), default.strip_prefix("default ").unwrap_or(default).to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn readme_lists_every_variable_with_the_binary_default() {
    let help = help_table().await;
    assert!(help.len() >= 15, "--help lists too few variables: {help:?}");
    assert_eq!(readme_table(), help);
}
