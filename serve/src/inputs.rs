//! Reading inputs: every file named, and every `*.yaml` / `*.yml` under every directory named
//! (recursively, in name order) — the reading `palisade compile` does.

use std::fs;
use std::path::{Path, PathBuf};

use palisade_engine::{Diagnostic, Errors, SourceFile};

/// Reads the inputs; every unreadable one is reported, with the files that were read.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, (Errors, Vec<SourceFile>)> {
    let mut files = Vec::new();
    let mut errors = Errors::default();
    for path in paths {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let before = files.len();
                walk(path, &mut files, &mut errors);
                if files.len() == before {
                    errors.diagnostics.push(
                        Diagnostic::new(format!(
                            "no `.yaml` or `.yml` files in directory `{}`",
                            path.display()
                        ))
                        .with_help("name policy and inventory files `*.yaml` or `*.yml`"),
                    );
                }
            }
            Ok(_) => read_file(path, &mut files, &mut errors),
            Err(e) => errors.diagnostics.push(Diagnostic::new(format!(
                "cannot read `{}`: {e}",
                path.display()
            ))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err((errors, files))
    }
}

fn walk(dir: &Path, files: &mut Vec<SourceFile>, errors: &mut Errors) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.diagnostics.push(Diagnostic::new(format!(
                "cannot read directory `{}`: {e}",
                dir.display()
            )));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, files, errors);
        } else if is_yaml(&path) {
            read_file(&path, files, errors);
        }
    }
}

/// Whether a file is read as an input when found in a directory.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn read_file(path: &Path, files: &mut Vec<SourceFile>, errors: &mut Errors) {
    match fs::read_to_string(path) {
        Ok(text) => files.push(SourceFile::new(path.display().to_string(), text)),
        Err(e) => errors.diagnostics.push(Diagnostic::new(format!(
            "cannot read `{}`: {e}",
            path.display()
        ))),
    }
}
