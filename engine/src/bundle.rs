//! Bundles: a compiled [`Engine`] as bytes a host can load without parsing YAML, with a
//! manifest that says what it is, whom it is for and who signed it.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 4 | the magic `PLSD` |
//! | 2 | the format version, [`FORMAT_VERSION`] |
//! | 4 | the manifest's length *m* |
//! | *m* | the [`Manifest`] (postcard): revision (SHA-256 of the payload), scope, input digests, key id |
//! | 1 | the signature's length: 0 (unsigned) or 64 |
//! | 0 or 64 | an ed25519 signature over every byte before it (magic, version, length, manifest) |
//! | rest | the payload: the engine, encoded with postcard |
//!
//! The signature covers the header and the manifest, and the manifest names the payload's
//! digest, so one signature binds all three and a version can't be swapped under it. What
//! changes the format (and [`FORMAT_VERSION`]): this layout, the manifest, and the postcard
//! layout of the compiled `Engine` and everything in it (field order and enum variants, not
//! names).
//!
//! Postcard writes fields in declaration order and enum variants by index, without names:
//! renaming a type or field leaves bundles as they are; adding, removing or reordering a field
//! or variant of an encoded type changes them. Encoded: [`Engine`] and everything in it —
//! `Options`, the compiled AuthorizationPolicies and rules (`CompiledPolicy`, `CompiledRule`,
//! `Pred`, `Attr`, `Values`, `StrMatch`, `RuleRef`), the `Inventory`, the workload views and
//! indexes (`WorkloadView`, `Groups`, `RuleSet`, `Index`), `CompiledNetwork`,
//! `ContainerPolicy`, `CompiledRequestAuthentication`. Not encoded: the inline-view cache.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Engine;

/// The first four bytes of every bundle.
pub const MAGIC: &[u8; 4] = b"PLSD";
/// The format version this build reads and writes. 4: the image rule `provenance`.
/// 3: the manifest and the signature.
/// 2: the inventory's phases, nodes and host networking, node-traffic and extension-provider
/// options, RequestAuthentication providers, CUSTOM rules, and the container checks' fields.
pub const FORMAT_VERSION: u16 = 4;
const PREFIX: usize = 4 + 2 + 4;
const SIGNATURE_LEN: usize = 64;
/// Manifests are small (a digest, a scope, one line per input file): a bound keeps a hostile
/// length from making a host allocate.
const MAX_MANIFEST: usize = 1 << 20;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whom a bundle is for: the whole mesh, one namespace, or one workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Scope {
    /// Every workload.
    #[default]
    Mesh,
    /// The workloads of one namespace.
    Namespace(String),
    /// One workload.
    Workload {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl Scope {
    /// Whether a bundle of this scope may be enforced by a host that enforces `host`: a
    /// mesh-wide bundle anywhere, a namespace's in that namespace or one of its workloads, a
    /// workload's only at that workload.
    pub fn covers(&self, host: &Scope) -> bool {
        match (self, host) {
            (Scope::Mesh, _) => true,
            (Scope::Namespace(a), Scope::Namespace(b)) => a == b,
            (Scope::Namespace(a), Scope::Workload { namespace, .. }) => a == namespace,
            (Scope::Workload { .. }, _) => self == host,
            (Scope::Namespace(_), Scope::Mesh) => false,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Mesh => f.write_str("mesh"),
            Scope::Namespace(ns) => write!(f, "namespace:{ns}"),
            Scope::Workload { namespace, name } => write!(f, "workload:{namespace}/{name}"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = BundleError;

    /// `mesh`, `namespace:NS` or `workload:NS/NAME`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BundleError::BadScope(s.to_string());
        let nonempty = |v: &str| (!v.is_empty() && !v.contains(['/', ':'])).then(|| v.to_string());
        if s == "mesh" {
            return Ok(Scope::Mesh);
        }
        if let Some(ns) = s.strip_prefix("namespace:") {
            return nonempty(ns).map(Scope::Namespace).ok_or_else(bad);
        }
        let (ns, name) = s
            .strip_prefix("workload:")
            .and_then(|w| w.split_once('/'))
            .ok_or_else(bad)?;
        match (nonempty(ns), nonempty(name)) {
            (Some(namespace), Some(name)) => Ok(Scope::Workload { namespace, name }),
            _ => Err(bad()),
        }
    }
}

/// One input a bundle was built from: its name and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigest {
    /// The name the compiler was given (a path, as written).
    pub name: String,
    /// The digest of its bytes.
    pub sha256: Sha256Digest,
}

/// What a bundle is: its revision, whom it is for, what it was built from, who signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The SHA-256 of the payload: the bundle's identity, and what a host reports enforcing.
    pub revision: Sha256Digest,
    /// Whom the bundle is for.
    pub scope: Scope,
    /// The inputs, sorted by name (so the same inputs give the same bytes).
    pub inputs: Vec<InputDigest>,
    /// The id of the key that signed it, when signed.
    pub key_id: Option<String>,
}

impl Manifest {
    /// The revision in hex.
    pub fn revision_hex(&self) -> String {
        hex(&self.revision)
    }
}

/// What the compiler knows beyond the engine: whom the bundle is for and what it was built
/// from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleInfo {
    /// Whom the bundle is for.
    pub scope: Scope,
    /// The inputs, in any order.
    pub inputs: Vec<InputDigest>,
}

impl BundleInfo {
    /// Records an input by name and content.
    pub fn input(&mut self, name: &str, bytes: &[u8]) {
        self.inputs.push(InputDigest {
            name: name.to_string(),
            sha256: Sha256::digest(bytes).into(),
        });
    }
}

/// A signing key with the id hosts know it by.
#[derive(Debug)]
pub struct BundleSigner {
    /// The id written into the manifest.
    pub key_id: String,
    /// The ed25519 key.
    pub key: SigningKey,
}

/// The keys a host trusts, each with its id. Several at once allow rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<(String, VerifyingKey)>);

impl TrustedKeys {
    /// No keys: bundles are accepted unsigned (and signed ones unchecked).
    pub fn none() -> Self {
        Self::default()
    }

    /// Keys from `(id, public key)` pairs; a public key is the base64 of its 32 bytes (as
    /// `palisade keygen` prints it).
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, BundleError> {
        let mut keys = Vec::new();
        for (id, text) in entries {
            let key = parse_public_key(text).map_err(|reason| BundleError::BadKey {
                key_id: id.to_string(),
                reason,
            })?;
            if id.is_empty() || keys.iter().any(|(k, _)| k == id) {
                return Err(BundleError::BadKey {
                    key_id: id.to_string(),
                    reason: "key ids must be unique and not empty".into(),
                });
            }
            keys.push((id.to_string(), key));
        }
        Ok(Self(keys))
    }

    /// Keys from ids and verifying keys.
    pub fn from_keys(keys: Vec<(String, VerifyingKey)>) -> Self {
        Self(keys)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }
}

/// The base64 of an ed25519 public key's 32 bytes, read as a key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| "not base64")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not the 32 of an ed25519 key", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid ed25519 public key".into())
}

/// The base64 (standard alphabet, padded) of a public key, as hosts take it.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

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
    /// The manifest does not decode.
    #[error("corrupt bundle: bad manifest: {0}")]
    Manifest(String),
    /// The payload does not match its digest.
    #[error("corrupt bundle: payload digest mismatch")]
    Digest,
    /// The payload does not decode.
    #[error("corrupt bundle: {0}")]
    Decode(String),
    /// Encoding failed.
    #[error("cannot encode bundle: {0}")]
    Encode(String),
    /// Keys are configured and the bundle carries no signature (sign it with `palisade compile
    /// --sign KEY --key-id ID`).
    #[error("bundle is not signed, and this host only accepts bundles signed by a trusted key")]
    Unsigned,
    /// Signed by a key the host does not trust.
    #[error("bundle is signed by key `{key_id}`, which this host does not trust")]
    UnknownKey {
        /// The key id in the manifest.
        key_id: String,
    },
    /// The signature does not verify.
    #[error("bundle signature by key `{key_id}` does not verify")]
    BadSignature {
        /// The key id in the manifest.
        key_id: String,
    },
    /// The bundle is for someone else.
    #[error("bundle is for {bundle}, and this host enforces {host}")]
    WrongScope {
        /// The bundle's scope.
        bundle: Scope,
        /// What the host enforces.
        host: Scope,
    },
    /// A scope that does not parse.
    #[error("`{0}` is not a scope: write `mesh`, `namespace:NS` or `workload:NS/NAME`")]
    BadScope(String),
    /// A configured key that does not parse.
    #[error("trusted key `{key_id}`: {reason}")]
    BadKey {
        /// Its id.
        key_id: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A bundle's parts, before anything is trusted.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The manifest.
    pub manifest: Manifest,
    /// The signature, when signed.
    pub signature: Option<[u8; SIGNATURE_LEN]>,
    signed: &'a [u8],
    payload: &'a [u8],
}

/// Splits a bundle into its parts and decodes the manifest. Checks nothing else.
pub fn parts(bytes: &[u8]) -> Result<Parts<'_>, BundleError> {
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(BundleError::NotABundle);
    }
    let version = match bytes.get(4..6) {
        Some([a, b]) => u16::from_le_bytes([*a, *b]),
        _ => return Err(BundleError::NotABundle),
    };
    if version != FORMAT_VERSION {
        return Err(BundleError::Version { found: version });
    }
    let len = match bytes.get(6..PREFIX) {
        Some([a, b, c, d]) => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => return Err(BundleError::NotABundle),
    };
    if len > MAX_MANIFEST {
        return Err(BundleError::Manifest(format!("{len} bytes is too long")));
    }
    let short = || BundleError::Manifest("the bundle ends inside its header".into());
    let end = PREFIX + len;
    let (signed, rest) = (
        bytes.get(..end).ok_or_else(short)?,
        bytes.get(end..).ok_or_else(short)?,
    );
    let manifest: Manifest = postcard::from_bytes(signed.get(PREFIX..).ok_or_else(short)?)
        .map_err(|e| BundleError::Manifest(e.to_string()))?;
    let (&sig_len, rest) = rest.split_first().ok_or_else(short)?;
    let (signature, payload) = match usize::from(sig_len) {
        0 => (None, rest),
        SIGNATURE_LEN => {
            let (sig, payload) = rest.split_at_checked(SIGNATURE_LEN).ok_or_else(short)?;
            (Some(sig.try_into().map_err(|_| short())?), payload)
        }
        n => return Err(BundleError::Manifest(format!("a signature of {n} bytes"))),
    };
    if Sha256::digest(payload).as_slice() != manifest.revision {
        return Err(BundleError::Digest);
    }
    Ok(Parts {
        manifest,
        signature,
        signed,
        payload,
    })
}

impl Parts<'_> {
    /// Checks the signature against `keys` (when any are configured) and the scope against
    /// what the host enforces.
    pub fn verify(&self, keys: &TrustedKeys, host: &Scope) -> Result<(), BundleError> {
        if !keys.is_empty() {
            let (Some(key_id), Some(signature)) = (&self.manifest.key_id, &self.signature) else {
                return Err(BundleError::Unsigned);
            };
            let key = keys.get(key_id).ok_or_else(|| BundleError::UnknownKey {
                key_id: key_id.clone(),
            })?;
            key.verify(self.signed, &Signature::from_bytes(signature))
                .map_err(|_| BundleError::BadSignature {
                    key_id: key_id.clone(),
                })?;
        }
        if !self.manifest.scope.covers(host) {
            return Err(BundleError::WrongScope {
                bundle: self.manifest.scope.clone(),
                host: host.clone(),
            });
        }
        Ok(())
    }

    /// Decodes the payload.
    pub fn engine(&self) -> Result<Engine, BundleError> {
        postcard::from_bytes(self.payload).map_err(|e| BundleError::Decode(e.to_string()))
    }

    /// The payload's size in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }
}

/// The revision (payload SHA-256, hex) of a well-formed bundle.
pub fn digest_hex(bundle: &[u8]) -> Option<String> {
    parts(bundle).ok().map(|p| p.manifest.revision_hex())
}

/// Encodes an engine, unsigned and mesh-wide.
pub fn encode_bundle(engine: &Engine) -> Result<Vec<u8>, BundleError> {
    encode_signed(engine, &BundleInfo::default(), None)
}

/// Encodes an engine with its manifest, signed when a signer is given.
pub fn encode_signed(
    engine: &Engine,
    info: &BundleInfo,
    signer: Option<&BundleSigner>,
) -> Result<Vec<u8>, BundleError> {
    let payload = postcard::to_allocvec(engine).map_err(|e| BundleError::Encode(e.to_string()))?;
    let mut inputs = info.inputs.clone();
    inputs.sort_by(|a, b| a.name.cmp(&b.name).then(a.sha256.cmp(&b.sha256)));
    let manifest = Manifest {
        revision: Sha256::digest(&payload).into(),
        scope: info.scope.clone(),
        inputs,
        key_id: signer.map(|s| s.key_id.clone()),
    };
    let manifest =
        postcard::to_allocvec(&manifest).map_err(|e| BundleError::Encode(e.to_string()))?;
    let len = u32::try_from(manifest.len())
        .ok()
        .filter(|&l| l as usize <= MAX_MANIFEST)
        .ok_or_else(|| BundleError::Encode("the manifest is too long".into()))?;
    let mut out = Vec::with_capacity(PREFIX + manifest.len() + 1 + SIGNATURE_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&manifest);
    match signer {
        Some(s) => {
            let signature = s.key.sign(&out);
            out.push(SIGNATURE_LEN as u8);
            out.extend_from_slice(&signature.to_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a bundle, checking its digest but no signature or scope (a host with no trusted
/// keys).
pub fn decode_bundle(bytes: &[u8]) -> Result<Engine, BundleError> {
    parts(bytes)?.engine()
}

/// Decodes a bundle a host may enforce: signed by one of `keys` when any are configured, and
/// for `host`'s scope. Returns the engine and the manifest.
pub fn open_bundle(
    bytes: &[u8],
    keys: &TrustedKeys,
    host: &Scope,
) -> Result<(Engine, Manifest), BundleError> {
    let parts = parts(bytes)?;
    parts.verify(keys, host)?;
    Ok((parts.engine()?, parts.manifest))
}

#[cfg(test)]
mod tests;
