//! No import loops, in any crate of the workspace: within a crate, the source files (one module
//! each) and the modules they use through `crate::` and `super::` paths form a graph without
//! cycles. A loop is one unit cut in two, or two units that each need the other; either way a
//! reader cannot take them one at a time. `layers.rs` checks the core's stricter order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules (`a::b`, the root is ``), each with the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The crates checked, relative to the workspace root.
const CRATES: &[&str] = &[
    "storage",
    "sql",
    "server",
    "cli",
    "kalamstore",
    "engines/rocksdb",
    "engines/object-store",
    "engines/foyer",
    "benches",
];

/// The module path of a source file under `src`: `lib.rs`/`main.rs` are the root, `a/mod.rs`
/// and `a.rs` are `a`, `a/b.rs` is `a::b`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source dir") {
        let path = entry.expect("a dir entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests" {
            out.push(path);
        }
    }
}

/// The paths a `use` tree names: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_owned(),
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// Every path the code (outside its test module) names from `crate::` or `super::`, as
/// written: `use` trees expanded, inline paths up to their last `::` segment.
fn named_paths(source: &str) -> Vec<String> {
    let code = source
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or(source);
    let mut out = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let tree = statement
            .strip_prefix("use ")
            .or_else(|| statement.strip_prefix("pub use "))
            .or_else(|| statement.strip_prefix("pub(crate) use "))
            .or_else(|| statement.strip_prefix("pub(super) use "));
        match tree {
            Some(tree) => out.extend(expand(tree)),
            None => {
                for root in ["crate::", "super::"] {
                    for (at, _) in statement.match_indices(root) {
                        let path: String = statement[at..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                            .collect();
                        out.push(path);
                    }
                }
            }
        }
    }
    out.retain(|p| p.starts_with("crate::") || p.starts_with("super::"));
    out
}

/// The module a path names: the longest known module its segments start with.
fn resolve(path: &str, from: &str, modules: &BTreeSet<String>) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = path;
    if let Some(tail) = rest.strip_prefix("crate::") {
        rest = tail;
    } else {
        // `super` of `a::b` is `a`, whether it is written as `a/b.rs` or `a/b/mod.rs`.
        segments = from.split("::").filter(|s| !s.is_empty()).collect();
        while let Some(tail) = rest.strip_prefix("super::") {
            segments.pop();
            rest = tail;
        }
    }
    segments.extend(rest.split("::").filter(|s| !s.is_empty()));
    let mut best = String::new();
    for n in 1..=segments.len() {
        let candidate = segments[..n].join("::");
        if modules.contains(&candidate) {
            best = candidate;
        }
    }
    best
}

fn graph(src: &Path) -> Graph {
    let mut sources = Vec::new();
    files(src, &mut sources);
    let modules: BTreeSet<String> = sources.iter().map(|f| module_of(src, f)).collect();
    let mut graph = Graph::new();
    for file in &sources {
        let module = module_of(src, file);
        let source = std::fs::read_to_string(file).expect("a source file");
        let uses = graph.entry(module.clone()).or_default();
        for path in named_paths(&source) {
            let used = resolve(&path, &module, &modules);
            // A module may use what its ancestors declare or re-export.
            let ancestor = used.is_empty() || module.starts_with(&format!("{used}::"));
            if used != module && !ancestor {
                uses.insert(used);
            }
        }
    }
    graph
}

/// The cycles of `graph`: its strongly connected components with more than one module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on its reverse.
    fn order<'g>(
        graph: &'g Graph,
        node: &'g str,
        seen: &mut BTreeSet<&'g str>,
        out: &mut Vec<&'g str>,
    ) {
        if !seen.insert(node) {
            return;
        }
        for next in graph.get(node).into_iter().flatten() {
            order(graph, next, seen, out);
        }
        out.push(node);
    }
    let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, uses) in graph {
        for to in uses {
            reverse.entry(to.as_str()).or_default().push(from.as_str());
        }
    }
    let (mut seen, mut finished) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        order(graph, node, &mut seen, &mut finished);
    }
    let mut assigned: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for node in finished.into_iter().rev() {
        if assigned.contains(node) {
            continue;
        }
        let mut component = Vec::new();
        let mut stack = vec![node];
        assigned.insert(node);
        while let Some(n) = stack.pop() {
            component.push(n.to_owned());
            for prev in reverse.get(n).into_iter().flatten() {
                if assigned.insert(prev) {
                    stack.push(prev);
                }
            }
        }
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_loop() {
    // Read when the test runs (see `layers.rs`): the workspace root is this crate's parent.
    let root = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets it"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let (mut loops, mut edges) = (Vec::new(), 0);
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let graph = graph(&src);
        assert!(!graph.is_empty(), "no sources found in {src:?}");
        edges += graph.values().map(BTreeSet::len).sum::<usize>();
        for cycle in cycles(&graph) {
            loops.push(format!("{krate}: {}", cycle.join(" <-> ")));
        }
    }
    assert!(
        edges > 100,
        "only {edges} imports found: is {root:?} the workspace?"
    );
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn the_check_finds_a_loop_and_reads_use_trees() {
    assert_eq!(
        expand("crate::a::{b, c::{d, self}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c"]
    );
    let modules: BTreeSet<String> = ["a", "a::b", "c"].map(String::from).into();
    assert_eq!(resolve("super::b::X", "a::c", &modules), "a::b");
    assert_eq!(resolve("crate::a::b::f", "c", &modules), "a::b");
    assert_eq!(resolve("crate::a::B", "c", &modules), "a");
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned()].into());
    graph.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
    graph.get_mut("c").expect("c").clear();
    assert!(cycles(&graph).is_empty());
}
