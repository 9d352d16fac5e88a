//! The shape of the code, checked: no file imports another that imports
//! it back (directly or around a loop), and each layer uses only the
//! layers below it (docs/architecture.md). A new `use` that breaks either
//! fails here, naming the files.
//!
//! Paths are read from the source text: `crate::`, `super::`, `self::`
//! and a file's own child modules, braces expanded; comments and test
//! modules are left out. A path names the deepest module file it reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each top-level module may use (besides itself and std).
const LAYERS: &[(&str, &[&str])] = &[
    ("proto", &[]),
    ("signal", &[]),
    ("sdnotify", &[]),
    ("datadir", &[]),
    ("config", &["datadir"]),
    ("cluster", &["proto"]),
    ("metrics", &["datadir"]),
    ("mime", &["proto"]),
    ("auth", &["config", "datadir"]),
    ("store", &["config", "mime", "proto", "signal"]),
    ("delivery", &["auth", "config", "datadir", "mime", "proto", "store"]),
    ("certs", &["config", "datadir", "delivery"]),
    ("migrate", &["auth", "cluster", "config", "datadir", "delivery", "proto", "store"]),
    ("session", &["auth", "mime", "proto", "signal", "store"]),
    ("pop3", &["auth", "proto", "store"]),
    (
        "net",
        &["auth", "certs", "cluster", "config", "datadir", "delivery", "metrics", "migrate", "mime", "pop3", "proto", "sdnotify", "session", "signal", "store"],
    ),
    ("doctor", &["auth", "certs", "cluster", "config", "datadir", "delivery", "migrate", "net", "store"]),
    ("fuzzing", &["auth", "delivery", "mime", "pop3", "proto", "session", "signal", "store"]),
];

/// Module path ("net::imap_conn", "" for the crate root) -> its file's text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix("src").unwrap().with_extension("");
            let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
                segs.pop();
            }
            if segs.last().is_some_and(|s| s == "main" || s.ends_with("tests")) {
                continue;
            }
            out.insert(segs.join("::"), strip(&std::fs::read_to_string(&p).unwrap()));
        }
    }
    let mut m = BTreeMap::new();
    walk(Path::new("src"), &mut m);
    m
}

/// The text without comments, string literals and the test module.
fn strip(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod ") {
        Some(i) => &src[..i],
        None => src,
    };
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal (not a lifetime): skip it.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(b: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&b[start..i]).into_owned(), i)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Every path starting at `i` (just after `root::`), braces expanded.
fn paths_from(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        i = skip_ws(b, i);
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                i = skip_ws(b, i);
                if i >= b.len() {
                    return i;
                }
                if b[i] == b'}' {
                    return i + 1;
                }
                if b[i] == b',' {
                    i += 1;
                    continue;
                }
                i = paths_from(b, i, path.clone(), out);
                // `as name` and the like
                while i < b.len() && b[i] != b',' && b[i] != b'}' {
                    i += 1;
                }
            }
        }
        let (id, j) = ident_at(b, i);
        if id.is_empty() {
            out.push(path);
            return i;
        }
        path.push(id);
        i = j;
        if b[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// The modules a file uses.
fn uses(name: &str, text: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let me: Vec<String> = if name.is_empty() { vec![] } else { name.split("::").map(String::from).collect() };
    let children: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("pub ").or_else(|| l.strip_prefix("pub(crate) ")).or_else(|| l.strip_prefix("pub(super) ")).unwrap_or(l);
            rest.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')).map(|n| n.trim().to_string())
        })
        .collect();
    let b = text.as_bytes();
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        if !boundary {
            i += 1;
            continue;
        }
        let (id, j) = ident_at(b, i);
        if id.is_empty() || !b[j..].starts_with(b"::") {
            i = j.max(i + 1);
            continue;
        }
        let mut base = match id.as_str() {
            "crate" => vec![],
            "self" => me.clone(),
            "super" => me[..me.len().saturating_sub(1)].to_vec(),
            c if children.iter().any(|x| x == c) => {
                let mut v = me.clone();
                v.push(c.to_string());
                v
            }
            _ => {
                i = j;
                continue;
            }
        };
        let mut k = j + 2;
        while b[k..].starts_with(b"super::") {
            base.pop();
            k += 7;
        }
        let mut ps = Vec::new();
        i = paths_from(b, k, base, &mut ps);
        found.extend(ps);
    }
    let mut out = BTreeSet::new();
    for mut p in found {
        if p.last().is_some_and(|s| s == "self") {
            p.pop();
        }
        let target = (0..=p.len()).rev().map(|n| p[..n].join("::")).find(|m| all.contains_key(m));
        if let Some(t) = target.filter(|t| t != name) {
            out.insert(t);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    all.iter().map(|(n, t)| (n.clone(), uses(n, t, &all))).collect()
}

/// The loops in the graph (strongly connected groups of two or more).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then collect on the reversed graph.
    fn visit<'a>(v: &'a str, g: &'a BTreeMap<String, BTreeSet<String>>, seen: &mut BTreeSet<&'a str>, order: &mut Vec<&'a str>) {
        let mut stack = vec![(v, g[v].iter())];
        seen.insert(v);
        while let Some((n, it)) = stack.last_mut() {
            match it.next() {
                Some(w) if g.contains_key(w.as_str()) && seen.insert(w.as_str()) => stack.push((w.as_str(), g[w.as_str()].iter())),
                Some(_) => {}
                None => {
                    order.push(n);
                    stack.pop();
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for v in g.keys() {
        if !seen.contains(v.as_str()) {
            visit(v, g, &mut seen, &mut order);
        }
    }
    let mut rev: BTreeMap<String, BTreeSet<String>> = g.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
    for (a, bs) in g {
        for b in bs {
            if let Some(r) = rev.get_mut(b) {
                r.insert(a.clone());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    for v in order.into_iter().rev() {
        if seen.contains(v) {
            continue;
        }
        let mut group = Vec::new();
        visit(v, &rev, &mut seen, &mut group);
        if group.len() > 1 {
            group.sort();
            groups.push(group.into_iter().map(String::from).collect());
        }
    }
    groups
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 50, "read the source tree ({} files)", g.len());
    let loops = cycles(&g);
    assert!(loops.is_empty(), "import cycles: {loops:#?}");
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let g = graph();
    let mut wrong = Vec::new();
    for (file, deps) in &g {
        let top = file.split("::").next().unwrap();
        let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| *l == top) else {
            if !file.is_empty() {
                wrong.push(format!("{file}: not in LAYERS (add its layer)"));
            }
            continue;
        };
        for d in deps {
            let dtop = d.split("::").next().unwrap();
            if dtop != top && !d.is_empty() && !allowed.contains(&dtop) {
                wrong.push(format!("{file} uses {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering: {wrong:#?}");
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let all: BTreeMap<String, String> = ["", "x", "x::y", "z"].iter().map(|s| (s.to_string(), String::new())).collect();
    let text = "mod y;\nuse super::z;\nuse crate::{z, x::y::{self}};\nfn f() { y::g(); } // crate::nothing";
    assert_eq!(uses("x", &strip(text), &all), ["x::y".to_string(), "z".into()].into());
}
