//! The core's modules form layers: each uses only the modules of the layers before it (the
//! order in `lib.rs`'s module doc). This test reads the sources and fails on an upward import,
//! which is also how a cycle between modules would show.

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, bottom first; a module may use modules of its own or an earlier layer only
/// when they come before it in this list.
const ORDER: &[&str] = &[
    "error",
    "clock",
    "ids",
    "types",
    "backend",
    "seq",
    "location",
    "timeout",
    "spawn",
    "failpoint",
    "job",
    "memory",
    "codec",
    "schema",
    "catalog",
    "cache",
    "filter",
    "format",
    "table",
    "merge",
    "write",
    "delta",
    "flush",
    "changes",
    "store",
    "conformance",
    "testing",
];

/// The `crate::<module>` names a source file uses outside its test module.
fn uses(source: &str) -> BTreeSet<String> {
    let code = source
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or(source);
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let name: String = code[at + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn visit(dir: &Path, module: Option<&str>, found: &mut Vec<(String, String, String)>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.is_dir() {
            if name == "tests" {
                continue;
            }
            visit(&path, Some(module.unwrap_or(name)), found);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests" {
            let module = module.unwrap_or(name);
            if module == "lib" {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source file");
            for used in uses(&source) {
                if used != module && used != "conformance_suite" {
                    found.push((module.to_owned(), used, path.display().to_string()));
                }
            }
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    // Read when the test runs: a path compiled in names the checkout that built the binary,
    // and cargo reuses a binary from a shared target directory for another checkout.
    let src =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets it")).join("src");
    let mut found = Vec::new();
    visit(&src, None, &mut found);
    assert!(!found.is_empty(), "no imports found: is {src:?} the core?");
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut upward = Vec::new();
    for (module, used, file) in &found {
        match (rank(module), rank(used)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(_), Some(_)) => upward.push(format!("{file}: {module} uses {used}")),
            _ => upward.push(format!("{file}: {module} or {used} is not in ORDER")),
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}
