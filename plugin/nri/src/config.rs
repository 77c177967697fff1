//! The plugin configuration: the text of `/etc/nri/conf.d/NN-palisade.conf` (or
//! `palisade.conf`), which NRI passes as `ConfigureRequest.config`.
//!
//! Either a compiled bundle (`palisade compile` output), base64-encoded, or inline YAML with
//! one or more `ContainerPolicy` documents (and, optionally, an `Inventory` for labels and
//! service accounts), or a JSON object `{"bundle": "<base64>", "trustedKeys": [{"keyId": ..,
//! "publicKey": ..}]}`: with trusted keys only a bundle signed by one of them for the whole mesh
//! (the plugin admits every container on its node) is accepted. The JSON form may also carry
//! `"attestations": [<DSSE envelope>, ...]`: the provenance statements `images.provenance`
//! verifies (NRI gives the plugin no filesystem, so they travel with the configuration).
//! A configuration that does not load, or that holds no `ContainerPolicy`,
//! is refused: `plugin_configure` returns an error and NRI does not start the plugin.

use base64::Engine as _;
use palisade_engine::{
    Engine, Options, Scope, SourceFile, TrustedKeys, bundle, compile, load, open_bundle,
};

/// The loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The compiled engine.
    pub engine: Engine,
    /// `bundle sha256:<hex>` or `inline YAML`.
    pub source: String,
    /// Provenance envelopes from the JSON form's `attestations`.
    pub attestations: Vec<palisade_engine::provenance::Attestation>,
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
    /// The JSON form does not parse, or names a key that is not one.
    #[error("the configuration is invalid: {0}")]
    Invalid(String),
    /// No ContainerPolicy: every container would be allowed.
    #[error(
        "the configuration holds no ContainerPolicy (kind `ContainerPolicy`, apiVersion `palisade.dev/v1alpha1`); the plugin would allow every container"
    )]
    NoContainerPolicy,
}

/// The JSON form.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsonConfig {
    bundle: String,
    #[serde(default)]
    trusted_keys: Vec<TrustedKey>,
    #[serde(default)]
    attestations: Vec<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrustedKey {
    key_id: String,
    public_key: String,
}

/// Reads the configuration text.
pub fn parse(text: &str) -> Result<Policy, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::Empty);
    }
    let mut attestations = Vec::new();
    let (bundle_text, keys) = if trimmed.starts_with('{') {
        let c: JsonConfig =
            serde_json::from_str(trimmed).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let keys = TrustedKeys::parse(
            c.trusted_keys
                .iter()
                .map(|k| (k.key_id.as_str(), k.public_key.as_str())),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        attestations = c
            .attestations
            .iter()
            .enumerate()
            .map(|(i, v)| palisade_engine::provenance::Attestation {
                name: format!("attestations[{i}]"),
                envelope: v.to_string(),
            })
            .collect();
        (c.bundle, keys)
    } else {
        (trimmed.to_string(), TrustedKeys::none())
    };
    let compact: String = bundle_text.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
        .filter(|b| b.starts_with(bundle::MAGIC));
    if decoded.is_none() && trimmed.starts_with('{') {
        return Err(ConfigError::Bundle(
            "`bundle` is not a base64 bundle".into(),
        ));
    }
    let policy = match decoded {
        Some(bytes) => {
            let (engine, _) = open_bundle(&bytes, &keys, &Scope::Mesh)
                .map_err(|e| ConfigError::Bundle(e.to_string()))?;
            let digest = bundle::digest_hex(&bytes).unwrap_or_default();
            Policy {
                engine,
                source: format!("bundle sha256:{digest}"),
                attestations,
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
                attestations,
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
    #[allow(clippy::unwrap_used)]
    fn with_trusted_keys_only_a_bundle_signed_by_one_of_them_loads() {
        use palisade_engine::bundle::public_key_base64;
        use palisade_engine::{BundleInfo, BundleSigner, encode_signed};
        let engine = load(&[SourceFile::new("p.yaml", POLICY)])
            .ok()
            .and_then(|s| compile(&s, &Options::default()).ok())
            .unwrap();
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
        let signer = |seed: u8| BundleSigner {
            key_id: format!("k{seed}"),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        };
        let key = |seed: u8| {
            serde_json::json!({"keyId": format!("k{seed}"),
                "publicKey": public_key_base64(&signer(seed).key.verifying_key())})
        };
        let mesh = BundleInfo::default();
        let ns = BundleInfo {
            scope: Scope::Namespace("shop".into()),
            inputs: vec![],
        };
        let signed = b64(encode_signed(&engine, &mesh, Some(&signer(1))).unwrap());
        let for_ns = b64(encode_signed(&engine, &ns, Some(&signer(1))).unwrap());
        let unsigned = b64(palisade_engine::encode_bundle(&engine).unwrap());
        let conf = |bundle: &str, keys: serde_json::Value| {
            parse(&serde_json::json!({"bundle": bundle, "trustedKeys": keys}).to_string())
                .map(|p| p.source)
                .map_err(|e| e.to_string())
        };
        assert!(
            conf(&signed, serde_json::json!([key(1)]))
                .is_ok_and(|s| s.starts_with("bundle sha256:"))
        );
        let rows = [
            (
                "unsigned",
                &unsigned,
                serde_json::json!([key(1)]),
                "the configured bundle is refused: bundle is not signed, and this host only accepts bundles signed by a trusted key",
            ),
            (
                "another key",
                &signed,
                serde_json::json!([key(2)]),
                "the configured bundle is refused: bundle is signed by key `k1`, which this host does not trust",
            ),
            (
                "one namespace's bundle",
                &for_ns,
                serde_json::json!([key(1)]),
                "the configured bundle is refused: bundle is for namespace:shop, and this host enforces mesh",
            ),
            (
                "not a bundle",
                &"AAAA".to_string(),
                serde_json::json!([key(1)]),
                "the configured bundle is refused: `bundle` is not a base64 bundle",
            ),
        ];
        for (name, bundle, keys, want) in rows {
            assert_eq!(conf(bundle, keys), Err(want.to_string()), "{name}");
        }
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
