//! The Istio `WasmPlugin` manifests in `examples/istio/` against the WasmPlugin API
//! (`extensions.istio.io/v1alpha1`, istio/api `extensions/v1alpha1/wasm.proto`) and against
//! the engine: each `pluginConfig.policy` must load and compile as the plugin would.
//!
//! YAML is read with the engine's own reader (`saphyr`, with positions), then turned into JSON
//! values (scalars stay strings, as written) for the checks.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use palisade_engine::yaml::{Node, Value, load_documents};
use palisade_engine::{Options, PathNormalization, SourceFile, compile, load};
use serde_json::{Map, Value as Json};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio")
}

fn to_json(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Scalar { text, .. } => Json::String(text.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, _, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// Every WasmPlugin document of every `*.yaml` in examples/istio: (file, document).
fn manifests() -> Vec<(String, Json)> {
    let mut files: Vec<_> = fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let docs = load_documents(&text).unwrap_or_else(|d| panic!("{name}: {d:?}"));
        for doc in docs {
            out.push((name.clone(), to_json(&doc)));
        }
    }
    assert!(!out.is_empty(), "no manifests in examples/istio");
    out
}

fn str_at<'a>(doc: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut v = doc;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str()
}

fn keys(v: &Json) -> BTreeSet<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The fields of `WasmPlugin.spec` (istio/api extensions/v1alpha1/wasm.proto).
const SPEC_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
];

/// The plugin's configuration options (docs/envoy-plugin.md, "Configuration").
const PLUGIN_CONFIG_FIELDS: &[&str] = &[
    "role",
    "policy",
    "bundle",
    "workload",
    "trustDomain",
    "trustDomainAliases",
    "rootNamespace",
    "pathNormalization",
    "numTrustedProxies",
    "mode",
    "denyStatus",
    "denyBody",
];

#[test]
fn every_manifest_is_a_wasm_plugin_with_the_fields_istio_requires() {
    for (file, doc) in manifests() {
        let at = |p: &[&str]| str_at(&doc, p);
        assert_eq!(
            at(&["apiVersion"]),
            Some("extensions.istio.io/v1alpha1"),
            "{file}"
        );
        assert_eq!(at(&["kind"]), Some("WasmPlugin"), "{file}");
        assert!(
            at(&["metadata", "name"]).is_some_and(|n| !n.is_empty()),
            "{file}"
        );
        assert!(at(&["metadata", "namespace"]).is_some(), "{file}");

        let spec = &doc["spec"];
        let unknown: Vec<_> = keys(spec)
            .into_iter()
            .filter(|k| !SPEC_FIELDS.contains(k))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file}: unknown spec fields {unknown:?}"
        );

        // url: required; Istio's schemes.
        let url = at(&["spec", "url"]).unwrap_or_else(|| panic!("{file}: no url"));
        assert!(
            ["oci://", "file://", "http://", "https://"]
                .iter()
                .any(|s| url.starts_with(s)),
            "{file}: url scheme of `{url}`"
        );
        // sha256: ^[a-f0-9]{64}$.
        let sha = at(&["spec", "sha256"]).unwrap_or_else(|| panic!("{file}: no sha256"));
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{file}: sha256 `{sha}`"
        );
        // Enums.
        let ty = at(&["spec", "type"]).unwrap_or_else(|| panic!("{file}: no type"));
        assert!(["HTTP", "NETWORK"].contains(&ty), "{file}: type {ty}");
        assert_eq!(at(&["spec", "phase"]), Some("AUTHZ"), "{file}");
        assert_eq!(at(&["spec", "failStrategy"]), Some("FAIL_CLOSE"), "{file}");
        if let Some(p) = at(&["spec", "imagePullPolicy"]) {
            assert!(
                ["UNSPECIFIED_POLICY", "IfNotPresent", "Always"].contains(&p),
                "{file}: imagePullPolicy {p}"
            );
        }
        // Exactly one way of choosing workloads; ours is a selector with labels.
        let targeting = ["selector", "targetRef", "targetRefs"]
            .iter()
            .filter(|k| spec.get(**k).is_some())
            .count();
        assert_eq!(targeting, 1, "{file}: selector/targetRef/targetRefs");
        assert!(
            !keys(&spec["selector"]["matchLabels"]).is_empty(),
            "{file}: selector.matchLabels"
        );
        if let Some(name) = at(&["spec", "pluginName"]) {
            assert!(!name.is_empty() && name.len() <= 256, "{file}: pluginName");
        }
        for m in spec
            .get("match")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(mode) = m.get("mode").and_then(Json::as_str) {
                assert!(
                    ["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"].contains(&mode),
                    "{file}: match.mode {mode}"
                );
            }
            for p in m
                .get("ports")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let n: u32 = p["number"].as_str().unwrap().parse().unwrap();
                assert!((1..=65535).contains(&n), "{file}: port {n}");
            }
        }
    }
}

#[test]
fn there_is_one_http_and_one_network_plugin() {
    let types: BTreeSet<String> = manifests()
        .iter()
        .filter_map(|(_, d)| str_at(d, &["spec", "type"]).map(str::to_string))
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["HTTP".to_string(), "NETWORK".to_string()])
    );
}

#[test]
fn every_plugin_config_uses_known_options_and_its_policy_compiles() {
    for (file, doc) in manifests() {
        let config = &doc["spec"]["pluginConfig"];
        let unknown: Vec<_> = keys(config)
            .into_iter()
            .filter(|k| !PLUGIN_CONFIG_FIELDS.contains(k))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file}: unknown plugin options {unknown:?}"
        );
        // The peer recorder (docs/envoy-gateway.md) decides nothing: `role` alone, as a
        // network filter.
        if config.get("role").and_then(Json::as_str) == Some("peerRecorder") {
            assert_eq!(keys(config), BTreeSet::from(["role"]), "{file}");
            assert_eq!(str_at(&doc, &["spec", "type"]), Some("NETWORK"), "{file}");
            continue;
        }
        if let Some(mode) = config.get("mode").and_then(Json::as_str) {
            assert!(
                ["enforce", "dry-run"].contains(&mode),
                "{file}: mode {mode}"
            );
        }
        if let Some(status) = config.get("denyStatus").and_then(Json::as_str) {
            let status: u16 = status.parse().unwrap();
            assert!((200..=599).contains(&status), "{file}: denyStatus {status}");
        }
        if let Some(n) = config.get("numTrustedProxies").and_then(Json::as_str) {
            n.parse::<u32>().unwrap();
        }

        // The workload, when given, is the one the selector picks, in the manifest's namespace.
        if let Some(workload) = config.get("workload") {
            assert_eq!(
                workload["namespace"], doc["metadata"]["namespace"],
                "{file}: workload.namespace"
            );
            for (k, v) in doc["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&workload["labels"][k], v, "{file}: workload.labels.{k}");
            }
        }

        // The policy loads and compiles with the manifest's mesh options.
        let policy = config["policy"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: pluginConfig.policy"));
        let set = load(&[SourceFile::new(format!("{file}#policy"), policy)])
            .unwrap_or_else(|e| panic!("{file}: policy does not load: {e:?}"));
        assert!(!set.authorization.is_empty(), "{file}: no policy in config");
        let mut options = Options::default();
        if let Some(td) = config.get("trustDomain").and_then(Json::as_str) {
            options.trust_domain = td.to_string();
        }
        if let Some(root) = config.get("rootNamespace").and_then(Json::as_str) {
            options.root_namespace = root.to_string();
        }
        if let Some(aliases) = config.get("trustDomainAliases").and_then(Json::as_array) {
            options.trust_domain_aliases = aliases
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
        }
        if let Some(n) = config.get("pathNormalization").and_then(Json::as_str) {
            options.path_normalization = PathNormalization::parse(n)
                .unwrap_or_else(|| panic!("{file}: pathNormalization {n}"));
        }
        compile(&set, &options).unwrap_or_else(|e| panic!("{file}: does not compile: {e:?}"));
    }
}

#[test]
fn the_readme_walks_through_build_package_push_and_apply() {
    let readme = fs::read_to_string(examples().join("README.md")).unwrap();
    for step in [
        "cargo build -p palisade-proxy-wasm --target wasm32-wasip1 --profile plugin",
        "cargo xtask oci",
        "oras cp --from-oci-layout",
        "skopeo copy oci-archive:",
        "kubectl apply -f examples/istio/",
        "file://",
        "https://",
    ] {
        assert!(readme.contains(step), "README.md lacks `{step}`");
    }
}
