//! Reading inputs: policy files and directories, the mesh options, request JSON.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use palisade_engine::labelled::Labelled;
use palisade_engine::{Diagnostic, Errors, Options, PolicySet, SourceFile, compile, load};

use crate::args::{HostNetworkAs, MeshArgs};
use crate::report::Failure;

/// Reads every file named, and every `*.yaml` / `*.yml` under every directory named
/// (recursively, in name order). Every unreadable input is reported.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Failure> {
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
        Err(Failure::invalid(errors, &files))
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
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            read_file(&path, files, errors);
        }
    }
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

/// The engine options: the defaults, overridden by the flags given; the extension
/// providers read from `--mesh-config`.
pub fn options(mesh: &MeshArgs) -> Result<Options, Failure> {
    let mut o = Options::default();
    if let Some(ns) = &mesh.root_namespace {
        o.root_namespace.clone_from(ns);
    }
    if let Some(td) = &mesh.trust_domain {
        o.trust_domain.clone_from(td);
    }
    o.trust_domain_aliases
        .clone_from(&mesh.trust_domain_aliases);
    if let Some(n) = mesh.path_normalization {
        o.path_normalization = n.into();
    }
    if let Some(path) = &mesh.mesh_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::message(format!("cannot read `{}`: {e}", path.display())))?;
        let file = palisade_engine::SourceFile::new(path.display().to_string(), text);
        o.extension_providers = palisade_engine::extauthz::read_mesh_config(&file)
            .map_err(|e| Failure::invalid(e, std::slice::from_ref(&file)))?;
    }
    if let Some(h) = mesh.host_network_pods {
        o.node_traffic.host_network_pods = match h {
            HostNetworkAs::Node => palisade_engine::HostNetworkPods::Node,
            HostNetworkAs::Pod => palisade_engine::HostNetworkPods::Pod,
        };
    }
    if mesh.isolate_from_own_node {
        o.node_traffic.allow_own_node = false;
    }
    Ok(o)
}

/// Loads and validates the sources, keeping the validated set (for counts).
pub fn load_set(sources: &[SourceFile]) -> Result<PolicySet, Failure> {
    load(sources).map_err(|e| Failure::invalid(e, sources))
}

/// Loads, validates and compiles the sources.
pub fn build(
    sources: &[SourceFile],
    options: &palisade_engine::Options,
) -> Result<(PolicySet, palisade_engine::Engine), Failure> {
    let set = load_set(sources)?;
    let engine = compile(&set, options).map_err(|e| Failure::invalid(e, sources))?;
    Ok((set, engine))
}

/// Reads requests from a file or `-` (standard input).
pub fn read_requests(arg: &str) -> Result<(SourceFile, Vec<Labelled>), Failure> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::message(format!("cannot read standard input: {e}")))?;
        s
    } else {
        fs::read_to_string(arg)
            .map_err(|e| Failure::message(format!("cannot read `{arg}`: {e}")))?
    };
    let file = SourceFile::new(arg, text);
    let requests = parse_requests(&file)?;
    Ok((file, requests))
}

/// Parses one JSON request, a JSON array of them, or JSON lines (any whitespace-separated
/// sequence of JSON values). Each item is a `Request` or
/// `{name?, description?, request, expect?, rule?}`.
pub fn parse_requests(file: &SourceFile) -> Result<Vec<Labelled>, Failure> {
    palisade_engine::labelled::parse(file)
        .map_err(|e| Failure::invalid(e, std::slice::from_ref(file)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use palisade_engine::Verdict;

    fn parse(text: &str) -> Result<Vec<Labelled>, Failure> {
        parse_requests(&SourceFile::new("r.json", text))
    }

    #[test]
    fn one_object_an_array_and_json_lines_all_parse() {
        let one = r#"{"destination": {"port": 80}}"#;
        assert_eq!(parse(one).unwrap().len(), 1);
        assert_eq!(parse(&format!("[{one}, {one}]")).unwrap().len(), 2);
        assert_eq!(parse(&format!("{one}\n{one}\n{one}\n")).unwrap().len(), 3);
    }

    #[test]
    fn the_labelled_form_keeps_name_and_expectation() {
        let v = parse(r#"[{"name": "a", "request": {}, "expect": "deny"}]"#).unwrap();
        assert_eq!(v[0].name.as_deref(), Some("a"));
        assert_eq!(v[0].expect, Some(Verdict::Deny));
    }

    #[test]
    fn an_unknown_field_names_line_column_and_path() {
        let text = "[\n  {},\n  {\"destination\": {\"prot\": 1}}\n]";
        let Err(f) = parse(text) else {
            panic!("an unknown field must be refused")
        };
        let d = &f.errors.diagnostics[0];
        assert_eq!(d.path.as_deref(), Some("[1].destination.prot"));
        let l = d.location.as_ref().unwrap();
        assert_eq!((l.line, l.column), (3, 25));
        assert!(d.message.contains("unknown field `prot`"), "{}", d.message);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(parse("  \n").is_err());
    }
}
