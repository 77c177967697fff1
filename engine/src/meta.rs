//! Document metadata: where a document was read, and its Kubernetes `metadata`.

use crate::diag::Diagnostic;
use crate::yaml;

/// Where a document was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// File name.
    pub file: String,
    /// 1-based line of the document start.
    pub line: usize,
}

pub(crate) struct Metadata {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) annotations: Vec<(String, String)>,
}

/// Reads `metadata`, accepting (and ignoring) the standard Kubernetes ObjectMeta fields.
pub(crate) fn read_metadata(top: &mut yaml::Fields<'_>) -> Result<Metadata, Diagnostic> {
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
