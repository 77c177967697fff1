//! Loading: every document of every input file read, validated and sorted by kind into a
//! [`PolicySet`].

use crate::authz::{self, AuthorizationPolicy};
use crate::diag::{Diagnostic, Errors};
use crate::inventory::{self, Inventory};
use crate::meta::{Origin, read_metadata};
use crate::netpol::{self, NetworkPolicy};
use crate::source::SourceFile;
use crate::yaml::{self, At};
use crate::{authn, container};

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
