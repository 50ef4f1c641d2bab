//! The crate's modules import one way, as `src/lib.rs`'s map lays them out: no two module files
//! import each other (directly or round a longer loop), and no module below `config` imports
//! it. Rust compiles cycles between the modules of one crate, so nothing but this test keeps the
//! shape from sliding back.
//!
//! The sources are read as text, the way the team's `modgraph.py` reads them: every
//! `use crate::...` and `use super::...` (grouped `use crate::{a, b::{c, d}}` forms expanded,
//! `as` aliases dropped) and every inline `crate::a::b` path, outside comments and outside the
//! trailing `#[cfg(test)] mod tests`. Each path counts as an import of the deepest module file
//! it names. `self::` paths are a parent naming its own children, not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module as the path of its file: `["scrape", "coalesce"]` for `src/scrape/coalesce/mod.rs`.
type Module = Vec<String>;

/// Who may import `config`: the binary's shell and the wiring on top with it (and `config`'s
/// own files).
const ABOVE_CONFIG: &[&str] = &["cli", "proxy"];

#[test]
fn no_module_file_imports_another_that_imports_it_back() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let cycles = graph.cycles();
    let report: Vec<String> = cycles.iter().map(|cycle| graph.describe(cycle)).collect();
    assert!(cycles.is_empty(), "import cycles between modules of src/:\n{}", report.join("\n"));
}

#[test]
fn no_module_below_config_imports_it() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut wrong = Vec::new();
    for (module, targets) in &graph.edges {
        let top = module.first().map(String::as_str).unwrap_or_default();
        if top == "config" || ABOVE_CONFIG.contains(&top) {
            continue;
        }
        for target in targets.iter().filter(|t| t.first().is_some_and(|t| t == "config")) {
            wrong.push(format!("    {} -> {}", graph.files[module], graph.files[target]));
        }
    }
    assert!(
        wrong.is_empty(),
        "modules below config import it (give the module a settings type of its own and let config fill it):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn grouped_and_aliased_uses_are_expanded() {
    let text = "use crate::{a, b::{c, d as e}};\npub(crate) use super::f::{self, G};\nuse std::x;\n\
                // use crate::commented::Out;\nfn f() { crate::h::i(); }\n#[cfg(test)]\nmod tests {\n    use crate::j;\n}\n";
    let paths = imports(text, &["m".to_owned()]);
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(shown, ["a", "b::c", "b::d", "m::f", "m::f::G", "h::i"]);
}

/// The module files of `src/` and which import which.
struct Graph {
    /// Each module's file, relative to `src/`.
    files: BTreeMap<Module, String>,
    /// Each module's imports of other modules.
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut paths = Vec::new();
        walk(src, &mut paths);
        let mut files = BTreeMap::new();
        for path in &paths {
            let relative = path.strip_prefix(src).expect("walked under src");
            // The binary is a crate of its own: it reaches the library by name, never `crate::`.
            if relative == Path::new("main.rs") {
                continue;
            }
            let mut module: Module =
                relative.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            files.insert(module, relative.display().to_string());
        }
        let mut edges = BTreeMap::new();
        for (module, relative) in &files {
            let text = fs::read_to_string(src.join(relative)).expect("a source file is UTF-8");
            let parent = &module[..module.len().saturating_sub(1)];
            let targets: BTreeSet<Module> = imports(&text, parent)
                .iter()
                .filter_map(|path| deepest(&files, path))
                .filter(|target| target != module && !target.is_empty())
                .collect();
            edges.insert(module.clone(), targets);
        }
        Graph { files, edges }
    }

    /// The strongly connected groups of more than one module.
    fn cycles(&self) -> Vec<BTreeSet<Module>> {
        let reach: BTreeMap<&Module, BTreeSet<Module>> =
            self.files.keys().map(|module| (module, self.reachable(module))).collect();
        let mut cycles: Vec<BTreeSet<Module>> = Vec::new();
        for (module, reached) in &reach {
            let group: BTreeSet<Module> =
                reached.iter().filter(|other| reach[other].contains(*module)).cloned().collect();
            if group.len() > 1 && !cycles.contains(&group) {
                cycles.push(group);
            }
        }
        cycles
    }

    /// Every module `from` reaches through imports, itself included if it is on a loop.
    fn reachable(&self, from: &Module) -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&Module> = self.edges[from].iter().collect();
        while let Some(module) = stack.pop() {
            if seen.insert(module.clone()) {
                stack.extend(self.edges.get(module).into_iter().flatten());
            }
        }
        seen
    }

    /// A cycle's files and the imports between them, as `modgraph.py` prints them.
    fn describe(&self, cycle: &BTreeSet<Module>) -> String {
        let names: Vec<&str> = cycle.iter().map(|m| self.files[m].as_str()).collect();
        let mut lines = vec![format!("cycle of {}: {}", cycle.len(), names.join(", "))];
        for module in cycle {
            for target in self.edges[module].iter().filter(|t| cycle.contains(*t)) {
                lines.push(format!("    {} -> {}", self.files[module], self.files[target]));
            }
        }
        lines.join("\n")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The deepest module file `path` names, if it names one.
fn deepest(files: &BTreeMap<Module, String>, path: &[String]) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|prefix| files.contains_key(prefix))
}

/// The crate paths a file's text imports, `super::` resolved against `parent` (the module that
/// holds this file's module).
fn imports(text: &str, parent: &[String]) -> Vec<Module> {
    let text = without_comments(before_tests(text));
    let mut paths = Vec::new();
    for statement in use_statements(&text) {
        let (base, tree) = if let Some(tree) = statement.strip_prefix("crate::") {
            (Vec::new(), tree)
        } else if let Some(tree) = statement.strip_prefix("super::") {
            (parent.to_vec(), tree)
        } else {
            continue;
        };
        expand(&base, &normalise(tree), &mut paths);
    }
    for path in inline_crate_paths(&text) {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths.iter_mut().for_each(|p| p.retain(|s| !s.is_empty() && s != "self" && s != "*"));
    paths
}

/// The file up to its trailing test module.
fn before_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i])
}

/// The text with every `//` comment (doc comments included) cut to the end of its line: a doc
/// link is not an import.
fn without_comments(text: &str) -> String {
    text.lines().map(|line| line.find("//").map_or(line, |i| &line[..i])).collect::<Vec<_>>().join("\n")
}

/// What follows `use ` up to its `;`, for every `use` item (with or without `pub`).
fn use_statements(text: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("use") {
        let start = from + found;
        from = start + 3;
        let before = text[..start].chars().next_back();
        let after = text[from..].chars().next();
        if before.is_some_and(is_ident) || !after.is_some_and(char::is_whitespace) {
            continue;
        }
        if let Some(end) = text[from..].find(';') {
            statements.push(text[from..from + end].trim());
        }
    }
    statements
}

/// A use tree with `as` aliases dropped and no white space.
fn normalise(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" {
            // Skip the alias itself, keeping whatever punctuation follows it.
            i += 1;
            if let Some(alias) = words.get(i) {
                kept.push_str(alias.trim_start_matches(is_ident));
            }
        } else {
            kept.push_str(words[i]);
        }
        i += 1;
    }
    kept
}

/// Expands a use tree such as `a::{b, c::{d, e}}` into paths under `prefix`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Module>) {
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        for item in split_top_level(inner) {
            expand(prefix, item, out);
        }
        return;
    }
    let mut path = prefix.to_vec();
    match tree.find("::{") {
        Some(i) => {
            path.extend(tree[..i].split("::").map(str::to_owned));
            expand(&path, &tree[i + 2..], out);
        }
        None => {
            path.extend(tree.split("::").map(str::to_owned));
            out.push(path);
        }
    }
}

/// The comma-separated items of a group, commas inside nested groups left alone.
fn split_top_level(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

/// Every `crate::a::b` written in the code (not in a `use`'s group): its segments.
fn inline_crate_paths(text: &str) -> Vec<Module> {
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("crate::") {
        let start = from + found;
        from = start + "crate::".len();
        if text[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &text[from..];
        if !rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let mut path = Vec::new();
        let mut segments = rest;
        loop {
            let end = segments.find(|c: char| !is_ident(c)).unwrap_or(segments.len());
            path.push(segments[..end].to_owned());
            segments = &segments[end..];
            match segments.strip_prefix("::") {
                Some(next) if next.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => segments = next,
                _ => break,
            }
        }
        paths.push(path);
    }
    paths
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
