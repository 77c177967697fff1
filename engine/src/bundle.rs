//! Bundles: a compiled [`Engine`] as bytes a host can load without parsing YAML.
//!
//! Layout: the magic `PLSD`, a little-endian `u16` format version, the 32-byte SHA-256 of the
//! payload, then the payload (the engine encoded with postcard). A bundle with another magic,
//! an unknown version or a payload that does not hash to the recorded digest is refused.
//!
//! What changes the format: postcard writes fields in declaration order and enum variants by
//! index, without names. Renaming a type or field leaves bundles as they are; adding, removing
//! or reordering a field or variant of an encoded type changes them (bump [`FORMAT_VERSION`]).
//! Encoded: [`Engine`] and everything in it — `Options`, the compiled AuthorizationPolicies
//! and rules (`CompiledPolicy`, `CompiledRule`, `Pred`, `Attr`, `Values`, `StrMatch`, `RuleRef`),
//! the `Inventory`, the workload views and indexes (`WorkloadView`, `Groups`, `RuleSet`,
//! `Index`), `CompiledNetwork`, `ContainerPolicy`, `CompiledRequestAuthentication`. Not
//! encoded: the inline-view cache.

use sha2::{Digest, Sha256};

use crate::engine::Engine;

/// The first four bytes of every bundle.
pub const MAGIC: &[u8; 4] = b"PLSD";
/// The format version this build reads and writes. It changes whenever the postcard layout
/// of the payload (the compiled `Engine` and everything in it) changes, so an older or newer
/// bundle is refused with this number rather than misread. 2: the inventory's phases, nodes
/// and host networking, node-traffic and extension-provider options, RequestAuthentication
/// providers, CUSTOM rules, and the container checks' new fields.
pub const FORMAT_VERSION: u16 = 2;
const HEADER: usize = 4 + 2 + 32;

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Too short or not starting with the magic.
    #[error("not a Palisade bundle (missing `PLSD` header)")]
    NotABundle,
    /// Written by another format version.
    #[error(
        "unsupported bundle format version {found} (this build reads version {FORMAT_VERSION})"
    )]
    Version {
        /// The version in the bundle.
        found: u16,
    },
    /// The payload does not match its digest.
    #[error("corrupt bundle: payload digest mismatch")]
    Digest,
    /// The payload does not decode.
    #[error("corrupt bundle: {0}")]
    Decode(String),
    /// Encoding failed.
    #[error("cannot encode bundle: {0}")]
    Encode(String),
}

/// The SHA-256 of the payload, hex-encoded (the bundle's identity).
pub fn digest_hex(bundle: &[u8]) -> Option<String> {
    let d = bundle.get(6..HEADER)?;
    Some(d.iter().map(|b| format!("{b:02x}")).collect())
}

/// Encodes an engine.
pub fn encode_bundle(engine: &Engine) -> Result<Vec<u8>, BundleError> {
    let payload = postcard::to_allocvec(engine).map_err(|e| BundleError::Encode(e.to_string()))?;
    let digest = Sha256::digest(&payload);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes and verifies a bundle.
pub fn decode_bundle(bytes: &[u8]) -> Result<Engine, BundleError> {
    if bytes.len() < HEADER || bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(BundleError::NotABundle);
    }
    let version = match bytes.get(4..6) {
        Some([a, b]) => u16::from_le_bytes([*a, *b]),
        _ => return Err(BundleError::NotABundle),
    };
    if version != FORMAT_VERSION {
        return Err(BundleError::Version { found: version });
    }
    let (Some(digest), Some(payload)) = (bytes.get(6..HEADER), bytes.get(HEADER..)) else {
        return Err(BundleError::NotABundle);
    };
    if Sha256::digest(payload).as_slice() != digest {
        return Err(BundleError::Digest);
    }
    postcard::from_bytes(payload).map_err(|e| BundleError::Decode(e.to_string()))
}
