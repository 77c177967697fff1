//! Reading `shared/conformance/istio-authz/cases.json`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Context, Result};

/// A trust-domain bundle of a case.
#[derive(Debug, Clone, Deserialize)]
pub struct TrustDomainBundle {
    /// The mesh trust domain.
    pub trust_domain: String,
    /// Its aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One upstream test case.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Upstream test name.
    pub name: String,
    /// `http` or `tcp`.
    pub kind: String,
    /// Input policies, relative to the corpus folder.
    pub input: String,
    /// Expected filters in chain order, relative to the corpus folder.
    pub want: Vec<String>,
    /// Whether the CUSTOM builder (ext_authz) produced the outputs.
    #[serde(default)]
    pub custom_builder: bool,
    /// The trust-domain bundle; `None` is the default (`cluster.local`, no aliases).
    #[serde(default)]
    pub trust_domain_bundle: Option<TrustDomainBundle>,
    /// Whether the upstream test still uses this case.
    #[serde(default = "yes")]
    pub referenced_by_test: bool,
}

fn yes() -> bool {
    true
}

/// The corpus folder as seen from a checkout: `<repo>/../shared/conformance/istio-authz`, or
/// `$PALISADE_ISTIO_AUTHZ` (a checkout that is a worktree elsewhere).
pub fn corpus_dir(repo_root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("PALISADE_ISTIO_AUTHZ") {
        return PathBuf::from(dir);
    }
    repo_root
        .join("..")
        .join("shared")
        .join("conformance")
        .join("istio-authz")
}

/// All cases of `cases.json` in `dir`.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>> {
    let path = dir.join("cases.json");
    let text = fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context(|| format!("parsing {}", path.display()))
}

/// Why a case is skipped, or `None` when it is run.
pub fn skip_reason(case: &Case) -> Option<&'static str> {
    if case.custom_builder {
        Some("CUSTOM action (ext_authz provider): not compared")
    } else if !case.referenced_by_test {
        Some("not referenced by the upstream test (legacy pre-1.11 output)")
    } else if case.want.is_empty() {
        Some("no expected filter")
    } else {
        None
    }
}
