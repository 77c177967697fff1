//! Reading inputs: policy files and directories, the mesh options, request JSON.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use palisade_engine::labelled::Labelled;
use palisade_engine::{Options, PolicySet, SourceFile, compile, load};

use crate::args::{HostNetworkAs, MeshArgs};
use crate::report::Failure;

/// Reads every file named, and every `*.yaml` / `*.yml` under every directory named
/// (recursively, in name order). Every unreadable input is reported.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Failure> {
    palisade_serve::inputs::read_sources(paths).map_err(|(e, files)| Failure::invalid(e, &files))
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
