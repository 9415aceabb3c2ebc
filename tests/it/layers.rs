//! The layer order of `src/` (CONTRIBUTING.md, "Where things live"): a top module imports only
//! those below it, so nothing low reaches up and no import cycle can form.

/// Bottom first. A module may `use crate::X` only for an X earlier in this list.
const ORDER: &[&str] = &[
    "model", "console", "config", "exec", "db", "store", "app", "migrate", "backup", "world", "guard", "record", "run",
    "report", "commands", "simulate", "cli",
];

#[test]
fn no_module_imports_one_above_it() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let Some(rank) = ORDER.iter().position(|m| *m == name) else {
            panic!("src/{name} is not in the layer order: add it to ORDER (and CONTRIBUTING.md)");
        };
        found.push(name.clone());
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests may reach anywhere.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                for used in imports(line) {
                    let Some(r) = ORDER.iter().position(|m| *m == used) else { continue };
                    if r > rank {
                        wrong.push(format!("{}:{}: {name} imports {used}, a layer above it", file.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layer order broken:\n{}", wrong.join("\n"));
    for m in ORDER {
        assert!(found.iter().any(|f| f == m), "ORDER names {m}, which src/ no longer has");
    }
}

/// The top modules a line names: `crate::X…`, and each of `crate::{X, Y::…}`.
fn imports(line: &str) -> Vec<&str> {
    let ident = |s: &str| s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    let mut out = Vec::new();
    for (i, m) in line.match_indices("crate::") {
        if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[i + m.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').map(str::trim).map(|g| &g[..ident(g)]));
            }
            None => out.push(&rest[..ident(rest)]),
        }
    }
    out
}

fn rust_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return if path.extension().is_some_and(|e| e == "rs") { vec![path.to_path_buf()] } else { vec![] };
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).unwrap() {
        out.extend(rust_files(&e.unwrap().path()));
    }
    out
}
