//! Palisade's engine: the pure core every host runs.
//!
//! It reads the policies users already write — Istio `AuthorizationPolicy`, Kubernetes
//! `NetworkPolicy` — and our `Inventory` of workloads, validates them with positions and field
//! paths, compiles them into an indexed [`Engine`], and decides [`Request`]s with an
//! explanation ([`Decision`]). No I/O, no clock, no host SDK: it builds for native and every
//! wasm32 target, and the same code runs in Envoy, container runtimes and the browser.
//!
//! ```
//! use palisade_engine::{compile, load, Options, Request, SourceFile};
//!
//! let policy = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: only-frontend, namespace: shop}
//! spec:
//!   selector: {matchLabels: {app: cart}}
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
//!     to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
//! "#;
//! let set = load(&[SourceFile::new("policy.yaml", policy)]).unwrap();
//! let engine = compile(&set, &Options::default()).unwrap();
//! let request: Request = serde_json::from_str(r#"{
//!   "source": {"principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
//!   "destination": {"port": 8080, "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
//!   "http": {"method": "GET", "host": "cart", "path": "/api/items?page=2"}
//! }"#).unwrap();
//! let decision = engine.decide(&request);
//! assert!(decision.allowed());
//! assert_eq!(decision.rule.unwrap().id, "ns[shop]-policy[only-frontend]-rule[0]");
//! ```

pub mod authn;
pub mod authz;
pub mod bundle;
pub mod compile;
pub mod container;
pub mod container_host;
pub mod container_read;
pub mod decision;
pub mod diag;
pub mod extauthz;
pub mod inventory;
pub mod netpol;
pub mod normalize;
pub mod pattern;
pub mod provenance;
pub mod request;
pub mod requests;
pub mod yaml;

pub use bundle::{
    BundleError, BundleInfo, BundleSigner, Manifest, Scope, TrustedKeys, decode_bundle,
    encode_bundle, encode_signed, open_bundle,
};
pub use compile::{Engine, compile};
pub use decision::{CustomCheck, Decision, RuleRef, ShadowResult, Step, Verdict};
pub use diag::{Diagnostic, Errors, Location};
pub use normalize::PathNormalization;
pub use request::{
    Endpoint, ExtAuthzAnswer, HttpAttributes, Protocol, Request, Transport, WorkloadRef,
};

use serde::{Deserialize, Serialize};

use crate::authz::{AuthorizationPolicy, Origin};
use crate::inventory::Inventory;
pub use crate::inventory::{AddressOwner, InventoryWarning, Phase};
use crate::netpol::NetworkPolicy;
pub use crate::netpol::{HostNetworkPods, NodeTraffic};
use crate::yaml::At;

/// An input file: a name for messages and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name used in diagnostics (a path, `-`, or a host-given name).
    pub name: String,
    /// The YAML text (one or more documents).
    pub text: String,
}

impl SourceFile {
    /// A file from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Mesh settings that change how policies are read and requests are seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Options {
    /// Policies in this namespace apply mesh-wide (Istio's `rootNamespace`).
    pub root_namespace: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// Other trust domains treated as the same (`trustDomainAliases`): principals in policies
    /// written for any of these match peers of every one of them.
    pub trust_domain_aliases: Vec<String>,
    /// How request paths are normalised before matching (Istio's `pathNormalization`).
    pub path_normalization: PathNormalization,
    /// How NetworkPolicy treats node traffic (`hostNetwork` pods, a pod's own node).
    pub node_traffic: NodeTraffic,
    /// The external authorizers CUSTOM policies name (meshConfig `extensionProviders`).
    pub extension_providers: Vec<extauthz::ExtensionProvider>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            path_normalization: PathNormalization::Base,
            node_traffic: NodeTraffic::default(),
            extension_providers: Vec::new(),
        }
    }
}

/// Everything read from the inputs, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    /// AuthorizationPolicies, in input order.
    pub authorization: Vec<AuthorizationPolicy>,
    /// RequestAuthentications, in input order.
    pub authentication: Vec<authn::RequestAuthentication>,
    /// NetworkPolicies, in input order.
    pub network: Vec<NetworkPolicy>,
    /// ContainerPolicies, in input order.
    pub container: Vec<container::ContainerPolicy>,
    /// The merged inventory.
    pub inventory: Inventory,
}

/// Reads and validates every document of every file. All problems are reported, one per
/// offending document; a file that is not YAML is one problem.
pub fn load(files: &[SourceFile]) -> Result<PolicySet, Errors> {
    let mut set = PolicySet::default();
    let mut errors = Errors::default();
    for file in files {
        let docs = match yaml::load_documents(&file.text) {
            Ok(d) => d,
            Err(d) => {
                errors.diagnostics.push(place(d, file, None));
                continue;
            }
        };
        // Each document's tree is dropped once decoded.
        for doc in docs {
            if let Err(d) = load_document(&doc, file, &mut set) {
                errors.diagnostics.push(place(d, file, None));
            }
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Fills in the file name and turns the character offset into a byte offset.
fn place(mut d: Diagnostic, file: &SourceFile, document: Option<String>) -> Diagnostic {
    if let Some(l) = &mut d.location {
        l.file.clone_from(&file.name);
        l.offset = file
            .text
            .char_indices()
            .nth(l.offset)
            .map_or(file.text.len(), |(b, _)| b);
        let end = file
            .text
            .get(l.offset..)
            .map(|rest| rest.chars().take(l.len).map(char::len_utf8).sum::<usize>())
            .unwrap_or(0);
        l.len = end;
    }
    if d.document.is_none() {
        d.document = document;
    }
    d
}

fn load_document(
    doc: &yaml::Node,
    file: &SourceFile,
    set: &mut PolicySet,
) -> Result<(), Diagnostic> {
    let root = At::root(doc);
    let mut top = root.fields()?;
    let api = top.require("apiVersion")?.at().string()?;
    let kind_f = top.require("kind")?;
    let kind = kind_f.at().string()?;
    // Kubernetes `List` documents hold items.
    if kind == "List" && api == "v1" {
        let items = top.require("items")?;
        top.ignore(&["metadata"]);
        top.finish(&["apiVersion", "kind", "items", "metadata"])?;
        for (item, path) in items.at().items()? {
            let _ = path;
            load_document(item.node, file, set)?;
        }
        return Ok(());
    }
    let meta = read_metadata(&mut top)?;
    let origin = Origin {
        file: file.name.clone(),
        line: doc.pos.line,
    };
    let describe = |d: Diagnostic| -> Diagnostic {
        let mut d = d;
        if d.document.is_none() {
            d.document = Some(format!("{kind} {}/{}", meta.namespace, meta.name));
        }
        d
    };
    match (api.as_str(), kind.as_str()) {
        ("security.istio.io/v1" | "security.istio.io/v1beta1", "AuthorizationPolicy") => {
            let p = authz::parse(
                top,
                meta.name.clone(),
                meta.namespace.clone(),
                &meta.annotations,
                origin,
            )
            .map_err(describe)?;
            set.authorization.push(p);
        }
        ("security.istio.io/v1" | "security.istio.io/v1beta1", "RequestAuthentication") => {
            let p = authn::parse(top, meta.name.clone(), meta.namespace.clone(), origin)
                .map_err(describe)?;
            set.authentication.push(p);
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let p = netpol::parse(top, meta.name.clone(), meta.namespace.clone(), origin)
                .map_err(describe)?;
            set.network.push(p);
        }
        ("palisade.dev/v1alpha1", "ContainerPolicy") => {
            let p = container::parse(
                top,
                meta.name.clone(),
                meta.namespace.clone(),
                format!("{}:{}", origin.file, origin.line),
            )
            .map_err(describe)?;
            set.container.push(p);
        }
        ("palisade.dev/v1alpha1", "Inventory") => {
            let inv = inventory::parse(top).map_err(describe)?;
            set.inventory.merge(inv);
        }
        (_, "AuthorizationPolicy") => {
            return Err(kind_f
                .at()
                .error(format!(
                    "unsupported apiVersion `{api}` for AuthorizationPolicy"
                ))
                .with_help("use `security.istio.io/v1` or `security.istio.io/v1beta1`"));
        }
        (_, "RequestAuthentication") => {
            return Err(kind_f
                .at()
                .error(format!(
                    "unsupported apiVersion `{api}` for RequestAuthentication"
                ))
                .with_help("use `security.istio.io/v1` or `security.istio.io/v1beta1`"));
        }
        (_, "NetworkPolicy") => {
            return Err(kind_f
                .at()
                .error(format!("unsupported apiVersion `{api}` for NetworkPolicy"))
                .with_help("use `networking.k8s.io/v1`"));
        }
        _ => {
            return Err(kind_f
                .at()
                .error(format!("unsupported document kind `{kind}` (apiVersion `{api}`)"))
                .with_help("Palisade reads AuthorizationPolicy and RequestAuthentication (security.istio.io/v1), NetworkPolicy (networking.k8s.io/v1), ContainerPolicy and Inventory (palisade.dev/v1alpha1)"));
        }
    }
    Ok(())
}

struct Metadata {
    name: String,
    namespace: String,
    annotations: Vec<(String, String)>,
}

/// Reads `metadata`, accepting (and ignoring) the standard Kubernetes ObjectMeta fields.
fn read_metadata(top: &mut yaml::Fields<'_>) -> Result<Metadata, Diagnostic> {
    let meta = top.require("metadata")?;
    let at = meta.at();
    let mut f = at.fields()?;
    let name = f.require("name")?.at().string()?;
    let namespace = match f.take("namespace") {
        Some(n) => n.at().string()?,
        None => "default".to_string(),
    };
    let annotations = match f.take("annotations") {
        Some(a) => a.at().string_map()?,
        None => Vec::new(),
    };
    if let Some(l) = f.take("labels") {
        l.at().string_map()?;
    }
    const IGNORED: &[&str] = &[
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "ownerReferences",
        "finalizers",
        "generateName",
        "selfLink",
    ];
    f.ignore(IGNORED);
    let mut known = vec!["name", "namespace", "labels", "annotations"];
    known.extend_from_slice(IGNORED);
    f.finish(&known)?;
    Ok(Metadata {
        name,
        namespace,
        annotations,
    })
}
