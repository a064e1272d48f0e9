//! No source file of the library and CLI crates holds more than 600 lines of code: past that a
//! file holds more than one concept and a reader cannot take it in one sitting. Tests do not
//! count (a `tests.rs`, the conformance suite, the test wrappers, and whatever follows a file's
//! first `#[cfg(test)]`).

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// The crates checked, relative to the workspace root.
const CRATES: &[&str] = &[
    "storage",
    "sql",
    "cli",
    "engines/rocksdb",
    "engines/object-store",
    "engines/foyer",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source dir") {
        let path = entry.expect("a dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "conformance" | "testing" | "tests") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// Lines before the file's first `#[cfg(test)]`.
fn code_lines(source: &str) -> usize {
    source
        .lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .count()
}

#[test]
fn no_source_file_is_over_600_lines_of_code() {
    // Read when the test runs: the workspace root is this crate's parent.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut over = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files {
            let lines = code_lines(&std::fs::read_to_string(&file).expect("a source file"));
            if lines > MAX_LINES {
                over.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(over.is_empty(), "over {MAX_LINES} lines of code: {over:#?}");
}

#[test]
fn code_lines_stop_at_the_tests() {
    assert_eq!(code_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    assert_eq!(code_lines("a\n"), 1);
}
