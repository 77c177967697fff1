//! The plugin configuration: the text of `/etc/nri/conf.d/NN-palisade.conf` (or
//! `palisade.conf`), which NRI passes as `ConfigureRequest.config`.
//!
//! Either a compiled bundle (`palisade compile` output), base64-encoded, or inline YAML with
//! one or more `ContainerPolicy` documents (and, optionally, an `Inventory` for labels and
//! service accounts). A configuration that does not load, or that holds no `ContainerPolicy`,
//! is refused: `plugin_configure` returns an error and NRI does not start the plugin.

use base64::Engine as _;
use palisade_engine::{Engine, Options, SourceFile, bundle, compile, decode_bundle, load};

/// The loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The compiled engine.
    pub engine: Engine,
    /// `bundle sha256:<hex>` or `inline YAML`.
    pub source: String,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Nothing configured.
    #[error(
        "the configuration is empty: give ContainerPolicy YAML or a base64 bundle in `/etc/nri/conf.d/NN-palisade.conf`"
    )]
    Empty,
    /// A bundle that does not decode.
    #[error("the configured bundle is refused: {0}")]
    Bundle(String),
    /// YAML that does not load or compile.
    #[error("the configured policy is invalid: {0}")]
    Policy(String),
    /// No ContainerPolicy: every container would be allowed.
    #[error(
        "the configuration holds no ContainerPolicy (kind `ContainerPolicy`, apiVersion `palisade.dev/v1alpha1`); the plugin would allow every container"
    )]
    NoContainerPolicy,
}

/// Reads the configuration text.
pub fn parse(text: &str) -> Result<Policy, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::Empty);
    }
    let compact: String = trimmed.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
        .filter(|b| b.starts_with(bundle::MAGIC));
    let policy = match decoded {
        Some(bytes) => {
            let engine = decode_bundle(&bytes).map_err(|e| ConfigError::Bundle(e.to_string()))?;
            let digest = bundle::digest_hex(&bytes).unwrap_or_default();
            Policy {
                engine,
                source: format!("bundle sha256:{digest}"),
            }
        }
        None => {
            let set = load(&[SourceFile::new("nri-config", text)])
                .map_err(|e| ConfigError::Policy(e.to_string()))?;
            let engine = compile(&set, &Options::default())
                .map_err(|e| ConfigError::Policy(e.to_string()))?;
            Policy {
                engine,
                source: "inline YAML".into(),
            }
        }
    };
    if policy.engine.container_policies().is_empty() {
        return Err(ConfigError::NoContainerPolicy);
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {name: baseline}
spec:
  privileges: {level: baseline}
";

    #[test]
    fn inline_yaml_with_a_container_policy_loads() {
        let p = parse(POLICY);
        assert!(
            p.as_ref()
                .is_ok_and(|p| p.engine.container_policies().len() == 1)
        );
        assert_eq!(p.map(|p| p.source).ok().as_deref(), Some("inline YAML"));
    }

    #[test]
    fn a_base64_bundle_loads_and_names_its_digest() {
        let set = load(&[SourceFile::new("p.yaml", POLICY)]);
        let bytes = set
            .ok()
            .and_then(|s| compile(&s, &Options::default()).ok())
            .and_then(|e| palisade_engine::encode_bundle(&e).ok())
            .unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let p = parse(&format!("{b64}\n"));
        assert!(
            p.as_ref()
                .is_ok_and(|p| p.source.starts_with("bundle sha256:"))
        );
    }

    #[test]
    fn an_empty_configuration_is_refused() {
        assert_eq!(parse("  \n").err(), Some(ConfigError::Empty));
    }

    #[test]
    fn invalid_yaml_is_refused_with_the_engines_message() {
        let e = parse(
            "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: x}\nspec: {privileges: {level: superuser}}\n",
        );
        assert!(matches!(e, Err(ConfigError::Policy(m)) if m.contains("superuser")));
    }

    #[test]
    fn a_corrupt_bundle_is_refused() {
        let mut bytes = b"PLSD".to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&[0; 40]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(matches!(parse(&b64), Err(ConfigError::Bundle(_))));
    }

    #[test]
    fn a_configuration_without_container_policies_is_refused() {
        let e = parse(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\nspec: {}\n",
        );
        assert_eq!(e.err(), Some(ConfigError::NoContainerPolicy));
    }
}
