//! The repository stands alone: no file cites documents a clone does not have, and every section
//! of docs/design.md or docs/kubernetes.md that a file cites exists in that document.
//!
//! No service is needed: the test walks the checkout with `std` only, skipping `target/`,
//! `bench-out/`, `.git` and every other hidden directory but `.ci/` (tool builds live in
//! `.build/`), and symbolic links (what they point to inside the checkout is walked anyway).
//! `.ci/standalone-docs.sh` does the first check with `git grep`, for tracked files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Citations of the design and the Kubernetes facts by the names they had outside the
/// repository, and paths into a sibling `shared` directory. Built with `concat!` so that this
/// file does not contain them.
const FORBIDDEN: [&str; 4] =
    [concat!("../", "shared"), concat!("DESIGN", " §"), concat!("DESIGN", ".md"), concat!("k8s-token", "-facts")];

/// The documents whose sections are cited, by the file name citations use, and their path.
const DOCS: [(&str, &str); 2] = [("design.md", "docs/design.md"), ("kubernetes.md", "docs/kubernetes.md")];

/// Directories never walked (besides hidden ones): build output and git-ignored benchmark data.
const SKIPPED_DIRS: [&str; 2] = ["target", "bench-out"];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every regular file under `dir`, in name order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<fs::DirEntry> =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `file_type` does not follow symbolic links: a link is neither a file nor a directory here.
        let kind = entry.file_type().unwrap();
        if name == ".git" {
            continue;
        }
        if kind.is_dir() {
            let hidden = name.starts_with('.') && name != ".ci";
            if !hidden && !SKIPPED_DIRS.contains(&name.as_str()) {
                walk(&entry.path(), out);
            }
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// The checkout's files, with their text (invalid UTF-8 replaced: images are searched too).
fn files() -> Vec<(String, String)> {
    let root = repo();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            (name, String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned())
        })
        .collect();
    // A walk of the wrong directory would prove nothing.
    for needed in ["README.md", "docs/design.md", "docs/kubernetes.md", "correlator/core/src/finding.rs"] {
        assert!(files.iter().any(|(name, _)| name == needed), "{needed} not found under {}", root.display());
    }
    files
}

/// The section numbers a document's headings carry: `## 3. Evidence` gives `3`, `### 3.4 Rule
/// catalogue` gives `3.4`.
fn sections(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter(|line| line.starts_with('#'))
        .filter_map(|line| {
            let number = line.trim_start_matches('#').split_whitespace().next()?.trim_end_matches('.');
            let numeric = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.');
            numeric.then(|| number.to_string())
        })
        .collect()
}

/// The sections a line cites: every `§N` after a document's name, up to the next document name
/// on the line. `docs/kubernetes.md §2, §5, §7` cites 2, 5 and 7 of kubernetes.md.
fn citations(line: &str) -> Vec<(&'static str, String)> {
    let mut names: Vec<(usize, usize, &'static str)> = Vec::new();
    for (doc, _) in DOCS {
        names.extend(line.match_indices(doc).map(|(at, _)| (at, at + doc.len(), doc)));
    }
    names.sort();
    let mut cited = Vec::new();
    for (i, &(_, end, doc)) in names.iter().enumerate() {
        let stop = names.get(i + 1).map_or(line.len(), |next| next.0).max(end);
        let span = &line[end..stop];
        for (at, sign) in span.match_indices('§') {
            let rest = &span[at + sign.len()..];
            let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let number = number.trim_end_matches('.');
            if !number.is_empty() {
                cited.push((doc, number.to_string()));
            }
        }
    }
    cited
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    let mut offenders = Vec::new();
    for (name, text) in files() {
        for (n, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|f| line.contains(f)) {
                offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these lines cite documents a clone of the repository does not have; cite docs/design.md or \
         docs/kubernetes.md instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_cited_section_exists() {
    let files = files();
    let mut known = Vec::new();
    for (doc, path) in DOCS {
        let text = &files.iter().find(|(name, _)| name == path).expect(path).1;
        let numbers = sections(text);
        assert!(numbers.len() > 5, "{path}: no numbered section headings found");
        known.push((doc, numbers));
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for (name, text) in &files {
        for (n, line) in text.lines().enumerate() {
            for (doc, number) in citations(line) {
                checked += 1;
                let numbers = &known.iter().find(|(d, _)| *d == doc).unwrap().1;
                if !numbers.contains(&number) {
                    missing.push(format!("{name}:{}: {doc} §{number}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} citations found: is the walk or the parsing broken?");
    assert!(missing.is_empty(), "these lines cite sections that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn citations_are_read_as_intended() {
    assert_eq!(
        citations("what the audit log carries (docs/kubernetes.md §2, §5, §7): the pod binding"),
        [("kubernetes.md", "2".to_string()), ("kubernetes.md", "5".to_string()), ("kubernetes.md", "7".to_string())]
    );
    assert_eq!(
        citations("(docs/design.md §3.4). See docs/kubernetes.md §4.1."),
        [("design.md", "3.4".to_string()), ("kubernetes.md", "4.1".to_string())]
    );
    assert_eq!(
        citations("see [docs/kubernetes.md](../../docs/kubernetes.md) §1-§6"),
        [("kubernetes.md", "1".to_string()), ("kubernetes.md", "6".to_string())]
    );
    assert!(citations("RFC 7519 §4.1.3, and no document named").is_empty());
    let numbers = sections("# Title\n\n## 3. Evidence\n\n### 3.4 Rule catalogue\n\n```sh\n# a comment\n```\n");
    assert_eq!(numbers, BTreeSet::from(["3".to_string(), "3.4".to_string()]));
}
