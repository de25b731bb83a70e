//! The crate's modules import one way only: each top-level module of `src/` sits in a layer, and
//! code may name only modules of its own layer or of layers below it, with no import circle
//! among the modules of one layer. Read from the source: every `crate::a::…` path, every
//! `use crate::{a, b::…}` outside comments, string and character literals and test
//! modules, the crate root's re-exports followed to the module that defines them.
//!
//! ```text
//!   6  lib.rs, runtime, arena   the public handles
//!   5  entry                    handler threads, SIGBUS resolver, reclaimer thread
//!   4  engine                   what happens to a page
//!   3  config, stats            the builder and the resolved Config; the figures reported
//!   2  error, event, filemap    data the layers above hand around
//!   1  mm, oom, store           page tables and replacement, OOM policy, swap stores
//!   0  sys                      every system call
//!  -1  util                     the lock helper and index conversions
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, i32)] = &[
    ("crate", 6),
    ("runtime", 6),
    ("arena", 6),
    ("entry", 5),
    ("engine", 4),
    ("config", 3),
    ("error", 2),
    ("event", 2),
    ("stats", 3),
    ("filemap", 2),
    ("mm", 1),
    ("oom", 1),
    ("store", 1),
    ("sys", 0),
    ("util", -1),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments, string and character literals, and `#[cfg(test)]` modules.
fn code(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n', '"'), not a lifetime.
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'')) => {
                i += if b[i + 1] == b'\\' { 4 } else { 3 };
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `src` names (`crate::x`, `use crate::{x, …}`), re-exports resolved.
fn named(src: &str, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |first: &str| {
        if first.is_empty() {
            return;
        }
        match reexports.get(first) {
            Some(m) => out.insert(m.clone()),
            None => out.insert(first.to_string()),
        };
    };
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // Only the first segment of each item of the group.
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        add(ident_at(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            add(ident_at(after));
        }
        rest = after;
    }
    out
}

#[test]
fn modules_import_downward_only_and_never_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let layer: BTreeMap<&str, i32> = LAYERS.iter().copied().collect();
    // The crate root's re-exports: item name → the top-level module defining it.
    let lib = code(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let mut reexports = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(i) = stmt.find("pub use ") else { continue };
        let path = stmt[i + "pub use ".len()..].trim();
        let module = ident_at(path).to_string();
        let items = path.find('{').map_or(path.rsplit("::").next().unwrap_or(""), |k| &path[k + 1..]);
        for item in items.split(|c: char| c == ',' || c == '}' || c.is_whitespace()) {
            if !item.is_empty() {
                reexports.insert(item.to_string(), module.clone());
            }
        }
    }
    // Top-level module → the top-level modules it names.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let top = if top == "lib" { "crate".to_string() } else { top };
        assert!(layer.contains_key(top.as_str()), "src/{} belongs to no layer: add `{top}` to LAYERS", rel.display());
        let src = code(&std::fs::read_to_string(f).unwrap());
        let names = named(&src, &reexports);
        let e = edges.entry(top.clone()).or_default();
        for n in names {
            if n != top && layer.contains_key(n.as_str()) {
                e.insert(n);
            }
        }
    }
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if layer[to.as_str()] > layer[from.as_str()] {
                wrong.push(format!(
                    "{from} (layer {}) imports {to} (layer {})",
                    layer[from.as_str()],
                    layer[to.as_str()]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports upward:\n{}", wrong.join("\n"));
    // Circles among the modules of one layer: a depth-first search for a back edge.
    fn visit<'a>(
        n: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        path.push(n);
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let k = path.iter().position(|x| x == m).unwrap();
                    let mut c: Vec<String> = path[k..].iter().map(|s| s.to_string()).collect();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, &edges, &mut state, &mut Vec::new()) {
                panic!("an import circle: {}", c.join(" -> "));
            }
        }
    }
}

/// The checker itself: it sees a path through a re-export and through a `use` group, and skips
/// comments and strings.
#[test]
fn the_checker_reads_what_it_should() {
    let re: BTreeMap<String, String> = [("Runtime".to_string(), "runtime".to_string())].into();
    let src = code(
        "use crate::{engine::Core, sys};\n// crate::ignored\nlet s = \"crate::nor_this\";\nlet c = '\"';\nx = crate::Runtime::x(); y = crate::mm::idx(1);",
    );
    let got = named(&src, &re);
    let want: BTreeSet<String> = ["engine", "sys", "runtime", "mm"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}

/// The engine also runs inside the SIGBUS handler of in-thread faults, where calling the logger
/// is not safe: it logs only through `engine::logq` (which queues such lines for a runtime
/// thread), never through the `log` crate's macros.
#[test]
fn the_engine_logs_only_through_its_queue() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = Vec::new();
    sources(&dir, &mut files);
    let macros = ["error!", "warn!", "info!", "debug!", "trace!", "log!", "log_enabled!"];
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("logq.rs")) {
        let src = code(&std::fs::read_to_string(f).unwrap());
        for (n, line) in src.lines().enumerate() {
            if macros.iter().any(|m| line.contains(&format!("log::{m}"))) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 5, "the check found only {} engine sources", files.len());
    assert!(found.is_empty(), "engine code calling the logger directly (use `note!`):\n{}", found.join("\n"));
}
