//! Provenance from the delivery pipeline: DSSE envelopes holding in-toto Statements (v1)
//! with a SLSA provenance (v1) predicate, signed with ed25519, and the decision whether an
//! image digest was built by an allowed builder from an allowed source.
//!
//! The formats, as published:
//!
//! * DSSE (`secure-systems-lab/dsse`, `envelope.md`, `protocol.md` v1.0.0): an envelope
//!   `{payload, payloadType, signatures: [{keyid, sig}]}`, payload and signatures in standard
//!   or URL-safe base64 (verifiers must accept both), each signature over
//!   `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`. The key id is an
//!   unauthenticated hint that may only narrow which keys are tried.
//! * in-toto Statement v1 (`in-toto/attestation`, `spec/v1/statement.md`,
//!   `digest_set.md`): `_type` `https://in-toto.io/Statement/v1`, a non-empty `subject` of
//!   resource descriptors whose `sha256` digests are lowercase hex, `predicateType`,
//!   `predicate`. Unknown fields are ignored, as the parsing rules say.
//! * SLSA provenance v1 (`slsa-framework/slsa`, `docs/spec/v1.0/provenance.md`):
//!   `runDetails.builder.id`; the source as the spec's own example puts it —
//!   `buildDefinition.externalParameters.{repository, ref}` (or `.workflow.{repository,
//!   ref}`, the GitHub Actions build type) — with the revision in the `resolvedDependencies`
//!   entry `git+<repository>@<ref>` as `digest.gitCommit`.
//!
//! Why no crate: `dsse` (0.1.6, one vendor's young crate) depends on `ed25519-dalek` 3 and
//! `base64` 0.23, which would put a second ed25519 and base64 into every wasm artifact for
//! the ten lines of PAE; `in-toto` (0.4) is about layouts and links and brings `ring`,
//! `chrono`, `walkdir` and `glob`, none of which belong in a wasm engine;
//! `in_toto_attestation` (0.1) is protobuf bindings; `sigstore` is a client for Fulcio, Rekor
//! and registries (reqwest, OpenSSL, tokio). Parsing is `serde` over the published schemas,
//! checked against the specifications' own examples in the tests.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance v1 `predicateType`.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Envelopes are small (a statement, a few signatures): a bound keeps a hostile file from
/// making a host allocate and parse megabytes per container start.
pub const MAX_ENVELOPE: usize = 1 << 20;

/// DSSE's pre-authentication encoding: what each signature signs.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Why an envelope, its statement or its provenance was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// Not a DSSE envelope (JSON shape, base64, size).
    #[error("not a DSSE envelope: {0}")]
    Envelope(String),
    /// No signature verified with a trusted key.
    #[error("no signature verifies with a trusted key ({0})")]
    Unsigned(String),
    /// The payload is not an in-toto statement (DSSE checks the type after the signature).
    #[error("payload type is `{0}`, not `application/vnd.in-toto+json`")]
    PayloadType(String),
    /// The payload is not an in-toto Statement v1 with a SLSA provenance v1 predicate.
    #[error("not an in-toto Statement v1 with SLSA provenance v1: {0}")]
    Statement(String),
    /// The statement's subjects do not include the image's digest.
    #[error("the statement names {subjects}, not the image `{digest}`")]
    OtherSubject {
        /// The image's digest.
        digest: String,
        /// What it names instead.
        subjects: String,
    },
    /// The builder is not one the policy allows.
    #[error("built by `{builder}`, not by an allowed builder ({allowed})")]
    Builder {
        /// `runDetails.builder.id`.
        builder: String,
        /// The allowed builders.
        allowed: String,
    },
    /// The source is not one the policy allows.
    #[error("built from `{from}`, not from an allowed source ({allowed})")]
    Source {
        /// The repository (and ref).
        from: String,
        /// The allowed sources.
        allowed: String,
    },
    /// The image digest is not `sha256:<64 lowercase hex>`.
    #[error("image digest `{0}` is not `sha256:` and 64 lowercase hex digits")]
    ImageDigest(String),
}

/// A DSSE envelope as JSON carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// base64 of the serialized body.
    pub payload: String,
    /// How to read the body.
    pub payload_type: String,
    /// Signatures over `PAE(payloadType, body)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The key's id: a hint which key to try, unauthenticated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// base64 of the signature.
    pub sig: String,
}

/// A key that may sign statements, with the id signatures name it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceKey {
    /// The key id (`keyid` in the envelope).
    pub key_id: String,
    /// The ed25519 public key.
    pub public_key: [u8; 32],
}

impl ProvenanceKey {
    /// A key from its id and the base64 of its 32 bytes (as `palisade keygen` prints it).
    pub fn parse(key_id: &str, public_key: &str) -> Result<ProvenanceKey, String> {
        if key_id.is_empty() {
            return Err("a key id is empty".into());
        }
        let key = crate::bundle::parse_public_key(public_key)
            .map_err(|e| format!("key `{key_id}`: {e}"))?;
        Ok(ProvenanceKey {
            key_id: key_id.to_string(),
            public_key: key.to_bytes(),
        })
    }
}

// Standard or URL-safe, padded or not: DSSE says verifiers must accept either alphabet, and
// producers differ on padding.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD_ANY
        .decode(text)
        .or_else(|_| URL_SAFE_ANY.decode(text))
        .ok()
}

impl Envelope {
    /// Reads an envelope from JSON.
    pub fn from_json(text: &str) -> Result<Envelope, ProvenanceError> {
        if text.len() > MAX_ENVELOPE {
            return Err(ProvenanceError::Envelope(format!(
                "{} bytes is more than {MAX_ENVELOPE}",
                text.len()
            )));
        }
        serde_json::from_str(text).map_err(|e| ProvenanceError::Envelope(e.to_string()))
    }

    /// Signs `body` as `payload_type` with one key.
    pub fn sign(payload_type: &str, body: &[u8], key_id: &str, key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, body));
        Envelope {
            payload: BASE64.encode(body),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature {
                keyid: key_id.to_string(),
                sig: BASE64.encode(sig.to_bytes()),
            }],
        }
    }

    /// The body, decoded.
    pub fn body(&self) -> Result<Vec<u8>, ProvenanceError> {
        decode_base64(&self.payload)
            .ok_or_else(|| ProvenanceError::Envelope("`payload` is not base64".into()))
    }

    /// Verifies the envelope as DSSE's protocol says, with a threshold of one: each
    /// signature is checked over the PAE against the key its `keyid` names (against every
    /// key when it names none); signatures that fail are skipped. Returns the body and the
    /// ids of the keys that verified, or why none did. The payload type is checked after.
    pub fn verify(&self, keys: &[ProvenanceKey]) -> Result<Verified, ProvenanceError> {
        let body = self.body()?;
        let signed = pae(&self.payload_type, &body);
        let mut accepted: Vec<String> = Vec::new();
        let mut why = Vec::new();
        for (i, s) in self.signatures.iter().enumerate() {
            let Some(bytes) = decode_base64(&s.sig) else {
                why.push(format!("signature {i} is not base64"));
                continue;
            };
            let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
                why.push(format!("signature {i} has {} bytes, not 64", bytes.len()));
                continue;
            };
            let sig = Signature::from_bytes(&bytes);
            let candidates: Vec<&ProvenanceKey> = keys
                .iter()
                .filter(|k| s.keyid.is_empty() || k.key_id == s.keyid)
                .collect();
            if candidates.is_empty() {
                why.push(format!(
                    "signature {i} names key `{}`, which is not trusted",
                    s.keyid
                ));
                continue;
            }
            let by = candidates.iter().find(|k| {
                VerifyingKey::from_bytes(&k.public_key)
                    .is_ok_and(|v| v.verify_strict(&signed, &sig).is_ok())
            });
            match by {
                Some(k) => {
                    if !accepted.contains(&k.key_id) {
                        accepted.push(k.key_id.clone());
                    }
                }
                None if s.keyid.is_empty() => {
                    why.push(format!("signature {i} verifies with no trusted key"));
                }
                None => why.push(format!(
                    "signature {i} by key `{}` does not verify",
                    s.keyid
                )),
            }
        }
        if self.signatures.is_empty() {
            why.push("the envelope has no signatures".into());
        }
        if accepted.is_empty() {
            return Err(ProvenanceError::Unsigned(why.join("; ")));
        }
        if self.payload_type != PAYLOAD_TYPE {
            return Err(ProvenanceError::PayloadType(self.payload_type.clone()));
        }
        Ok(Verified {
            body,
            key_ids: accepted,
        })
    }
}

/// A verified envelope's body and signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The serialized statement.
    pub body: Vec<u8>,
    /// The ids of the trusted keys whose signatures verified.
    pub key_ids: Vec<String>,
}

/// A DigestSet: algorithm to encoded digest, in the order written. Duplicate algorithms
/// are refused: JSON readers differ on which one wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DigestSet(pub Vec<(String, String)>);

impl DigestSet {
    /// The digest for one algorithm.
    pub fn get(&self, algorithm: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, _)| a == algorithm)
            .map(|(_, v)| v.as_str())
    }
}

impl<'de> Deserialize<'de> for DigestSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DigestSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of digest algorithm to digest")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DigestSet, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(a, _)| *a == k) {
                        return Err(serde::de::Error::custom(format!(
                            "digest algorithm `{k}` given twice"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(DigestSet(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An in-toto ResourceDescriptor (the fields read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceDescriptor {
    /// `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSet>,
}

/// An in-toto Statement v1 (the fields read; others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Option<Vec<ResourceDescriptor>>,
    #[serde(default)]
    predicate_type: Option<String>,
    #[serde(default)]
    predicate: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProvenance {
    build_definition: RawBuildDefinition,
    run_details: RawRunDetails,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBuildDefinition {
    build_type: String,
    #[serde(default)]
    external_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    resolved_dependencies: Option<Vec<ResourceDescriptor>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRunDetails {
    builder: RawBuilder,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RawBuilder {
    id: String,
}

/// What a statement attests, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The subjects: name and `sha256` (lowercase hex), in order.
    pub subjects: Vec<Subject>,
    /// `runDetails.builder.id`.
    pub builder: String,
    /// `buildDefinition.buildType`.
    pub build_type: String,
    /// The source.
    pub source: Source,
}

/// One subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// `name` (may be empty).
    pub name: String,
    /// `digest.sha256`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Where the build's source came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The repository (`externalParameters.repository`).
    pub repository: String,
    /// The ref (`externalParameters.ref`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The commit it resolved to (`resolvedDependencies[git+<repository>@<ref>].digest.gitCommit`).
    pub revision: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(r) = &self.git_ref {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

fn is_lower_hex(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn bad(msg: impl Into<String>) -> ProvenanceError {
    ProvenanceError::Statement(msg.into())
}

/// Reads an in-toto Statement v1 with a SLSA provenance v1 predicate from a verified body.
pub fn parse_statement(body: &[u8]) -> Result<Provenance, ProvenanceError> {
    let raw: RawStatement = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if raw.kind != STATEMENT_TYPE {
        return Err(bad(format!(
            "`_type` is `{}`, not `{STATEMENT_TYPE}`",
            raw.kind
        )));
    }
    let predicate_type = raw.predicate_type.unwrap_or_default();
    if predicate_type != SLSA_PROVENANCE_V1 {
        return Err(bad(format!(
            "`predicateType` is `{predicate_type}`, not `{SLSA_PROVENANCE_V1}`"
        )));
    }
    let mut subjects = Vec::new();
    for (i, s) in raw.subject.unwrap_or_default().into_iter().enumerate() {
        let digest = s.digest.unwrap_or_default();
        if digest.0.is_empty() {
            return Err(bad(format!("`subject[{i}]` has no digest")));
        }
        let sha256 = digest.get("sha256").map(str::to_string);
        if let Some(d) = &sha256
            && !is_lower_hex(d, &[64])
        {
            return Err(bad(format!(
                "`subject[{i}].digest.sha256` `{d}` is not 64 lowercase hex digits"
            )));
        }
        subjects.push(Subject {
            name: s.name.unwrap_or_default(),
            sha256,
        });
    }
    if subjects.is_empty() {
        return Err(bad("`subject` is empty"));
    }
    let predicate = raw
        .predicate
        .filter(|p| !p.is_null())
        .ok_or_else(|| bad("no `predicate`"))?;
    let p: RawProvenance =
        serde_json::from_value(predicate).map_err(|e| bad(format!("predicate: {e}")))?;
    if p.run_details.builder.id.is_empty() {
        return Err(bad("`runDetails.builder.id` is empty"));
    }
    let source = source(&p.build_definition)?;
    Ok(Provenance {
        subjects,
        builder: p.run_details.builder.id,
        build_type: p.build_definition.build_type,
        source,
    })
}

/// `{repository, ref}` from `externalParameters` or `externalParameters.workflow`.
fn repository_and_ref(
    params: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<Option<(String, Option<String>)>, ProvenanceError> {
    let Some(repo) = params.get("repository").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let repo = repo
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("`{at}.repository` is not a non-empty string")))?;
    let git_ref = match params.get("ref").filter(|v| !v.is_null()) {
        None => None,
        Some(r) => Some(
            r.as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(format!("`{at}.ref` is not a non-empty string")))?
                .to_string(),
        ),
    };
    Ok(Some((repo.to_string(), git_ref)))
}

fn source(def: &RawBuildDefinition) -> Result<Source, ProvenanceError> {
    let params = def.external_parameters.clone().unwrap_or_default();
    let top = repository_and_ref(&params, "externalParameters")?;
    let workflow = match params.get("workflow").and_then(|w| w.as_object()) {
        Some(w) => repository_and_ref(w, "externalParameters.workflow")?,
        None => None,
    };
    let (repository, git_ref) = match (top, workflow) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "`externalParameters` and `externalParameters.workflow` name different sources",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(bad(
                "no source: `buildDefinition.externalParameters` has no `repository`",
            ));
        }
    };
    let uri = match &git_ref {
        Some(r) => format!("git+{repository}@{r}"),
        None => format!("git+{repository}"),
    };
    let mut revision: Option<String> = None;
    for d in def.resolved_dependencies.iter().flatten() {
        if d.uri.as_deref() != Some(uri.as_str()) {
            continue;
        }
        let Some(commit) = d.digest.as_ref().and_then(|g| g.get("gitCommit")) else {
            continue;
        };
        if !is_lower_hex(commit, &[40, 64]) {
            return Err(bad(format!(
                "the `gitCommit` of `{uri}` is not 40 or 64 lowercase hex digits"
            )));
        }
        match &revision {
            Some(r) if r != commit => {
                return Err(bad(format!("`{uri}` resolved to two commits")));
            }
            _ => revision = Some(commit.to_string()),
        }
    }
    let revision = revision.ok_or_else(|| {
        bad(format!(
            "no revision: `resolvedDependencies` has no `{uri}` with a `gitCommit`"
        ))
    })?;
    Ok(Source {
        repository,
        git_ref,
        revision,
    })
}

/// The rule `images.provenance`: the statements a container's image needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceRule {
    /// Allowed `runDetails.builder.id`s, compared exactly.
    pub builders: Vec<String>,
    /// Allowed sources: a repository (any ref), or `repository@ref`; compared exactly.
    pub sources: Vec<String>,
    /// The keys that may sign statements.
    pub keys: Vec<ProvenanceKey>,
}

/// A statement that let an image run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attested {
    /// What it attests.
    pub provenance: Provenance,
    /// The keys whose signatures verified.
    pub key_ids: Vec<String>,
}

/// Why no statement let the image run: for each envelope offered, what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The image's digest.
    pub digest: String,
    /// Each envelope's failure, in the order given (by the envelope's name).
    pub failures: Vec<(String, ProvenanceError)>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return write!(f, "no provenance statement for image `{}`", self.digest);
        }
        write!(
            f,
            "no verified provenance statement from an allowed builder and source names image `{}`",
            self.digest
        )?;
        for (name, e) in &self.failures {
            write!(f, "; {name}: {e}")?;
        }
        Ok(())
    }
}

fn quoted(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ProvenanceRule {
    /// Whether `source` is allowed: an entry equal to the repository, or to `repository@ref`.
    pub fn allows_source(&self, source: &Source) -> bool {
        let with_ref = source.to_string();
        self.sources
            .iter()
            .any(|s| *s == source.repository || (source.git_ref.is_some() && *s == with_ref))
    }

    /// Checks one envelope for `digest`: verified with the rule's keys, an in-toto Statement
    /// v1 with SLSA provenance v1 naming the digest, from an allowed builder and source.
    pub fn check_envelope(
        &self,
        digest: &str,
        envelope: &str,
    ) -> Result<Attested, ProvenanceError> {
        let hex = image_sha256(digest)?;
        let verified = Envelope::from_json(envelope)?.verify(&self.keys)?;
        let provenance = parse_statement(&verified.body)?;
        if !provenance
            .subjects
            .iter()
            .any(|s| s.sha256.as_deref() == Some(hex))
        {
            let subjects = provenance
                .subjects
                .iter()
                .map(|s| match &s.sha256 {
                    Some(d) => format!("`sha256:{d}`"),
                    None => format!("`{}` (no sha256 digest)", s.name),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ProvenanceError::OtherSubject {
                digest: digest.to_string(),
                subjects,
            });
        }
        if !self.builders.contains(&provenance.builder) {
            return Err(ProvenanceError::Builder {
                builder: provenance.builder,
                allowed: quoted(&self.builders),
            });
        }
        if !self.allows_source(&provenance.source) {
            return Err(ProvenanceError::Source {
                from: provenance.source.to_string(),
                allowed: quoted(&self.sources),
            });
        }
        Ok(Attested {
            provenance,
            key_ids: verified.key_ids,
        })
    }

    /// Decides `digest` on the envelopes offered (name, JSON): the first that passes lets it
    /// run; otherwise every failure is reported.
    pub fn check<'a>(
        &self,
        digest: &str,
        envelopes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Attested, Denial> {
        let mut failures = Vec::new();
        for (name, text) in envelopes {
            match self.check_envelope(digest, text) {
                Ok(a) => return Ok(a),
                Err(e @ ProvenanceError::ImageDigest(_)) => {
                    return Err(Denial {
                        digest: digest.to_string(),
                        failures: vec![("image".into(), e)],
                    });
                }
                Err(e) => failures.push((name.to_string(), e)),
            }
        }
        if let Err(e) = image_sha256(digest) {
            failures = vec![("image".into(), e)];
        }
        Err(Denial {
            digest: digest.to_string(),
            failures,
        })
    }
}

/// An attestation a host offers at decision time: where it came from (for messages) and the
/// envelope's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attestation {
    /// The file (or other origin) it was read from.
    pub name: String,
    /// The DSSE envelope, JSON.
    pub envelope: String,
}

/// The ContainerPolicy check: `None` when an offered attestation lets `digest` run, else the
/// violation's message.
pub fn check_image(
    rule: &ProvenanceRule,
    image: &str,
    digest: Option<&str>,
    attestations: &[Attestation],
) -> Option<String> {
    let Some(digest) = digest else {
        return Some(format!(
            "image `{image}` has no digest, so no provenance statement can name it; pin it as `name@sha256:…`"
        ));
    };
    match rule.check(
        digest,
        attestations
            .iter()
            .map(|a| (a.name.as_str(), a.envelope.as_str())),
    ) {
        Ok(_) => None,
        Err(denial) => Some(format!("image `{image}`: {denial}")),
    }
}

/// Reads `images.provenance`: `{builders: [...], sources: [...], keys: [{keyId, publicKey}]}`,
/// each list non-empty (an empty one would let nothing run, which is what no rule is for).
pub fn parse_rule(at: crate::yaml::At<'_>) -> crate::yaml::DResult<ProvenanceRule> {
    let mut f = at.fields()?;
    let builders_f = f.require("builders")?;
    let sources_f = f.require("sources")?;
    let keys_f = f.require("keys")?;
    f.finish(&["builders", "sources", "keys"])?;
    let mut rule = ProvenanceRule::default();
    for (field, list, what) in [
        (&builders_f, &mut rule.builders, "builder id"),
        (&sources_f, &mut rule.sources, "source"),
    ] {
        for s in field.at().strings()? {
            if s.value.is_empty() || s.value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(s.error(format!("invalid {what} `{}`", s.value)));
            }
            list.push(s.value);
        }
        if list.is_empty() {
            return Err(field
                .at()
                .error(format!("no {what}s: no image could run"))
                .with_help("list the builders, sources and keys of your pipeline"));
        }
    }
    for (item, path) in keys_f.at().items()? {
        let item = item.with_path(&path);
        let mut k = item.fields()?;
        let id_f = k.require("keyId")?;
        let key_f = k.require("publicKey")?;
        k.finish(&["keyId", "publicKey"])?;
        let id = id_f.at().string()?;
        let key = ProvenanceKey::parse(&id, &key_f.at().string()?).map_err(|e| {
            key_f.at().error(e).with_help(
                "the base64 of the 32-byte ed25519 public key, as `palisade keygen` writes it",
            )
        })?;
        if rule.keys.iter().any(|k| k.key_id == id) {
            return Err(id_f.at().error(format!("key id `{id}` is listed twice")));
        }
        rule.keys.push(key);
    }
    if rule.keys.is_empty() {
        return Err(keys_f.at().error("no keys: no statement could be verified"));
    }
    Ok(rule)
}

/// The hex of `sha256:<hex>`, which must be 64 lowercase hex digits.
pub fn image_sha256(digest: &str) -> Result<&str, ProvenanceError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| is_lower_hex(h, &[64]))
        .ok_or_else(|| ProvenanceError::ImageDigest(digest.to_string()))
}

/// A statement for `palisade attest`: one subject, a builder, a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSpec {
    /// The subject's name (the image's repository).
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// `runDetails.builder.id`.
    pub builder: String,
    /// `buildDefinition.buildType`.
    pub build_type: String,
    /// The repository.
    pub repository: String,
    /// The ref.
    pub git_ref: String,
    /// The commit.
    pub revision: String,
}

/// The build type `palisade attest` writes: the parameters are the spec's own example's.
pub const ATTEST_BUILD_TYPE: &str = "https://palisade.dev/attest/v1";

impl StatementSpec {
    /// The statement as JSON bytes (keys sorted).
    pub fn to_json(&self) -> Result<Vec<u8>, ProvenanceError> {
        let hex = image_sha256(&self.digest)?;
        if !is_lower_hex(&self.revision, &[40, 64]) {
            return Err(bad(format!(
                "revision `{}` is not a git commit (40 or 64 lowercase hex digits)",
                self.revision
            )));
        }
        let statement = serde_json::json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.name, "digest": {"sha256": hex}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {
                "buildDefinition": {
                    "buildType": self.build_type,
                    "externalParameters": {"repository": self.repository, "ref": self.git_ref},
                    "resolvedDependencies": [{
                        "uri": format!("git+{}@{}", self.repository, self.git_ref),
                        "digest": {"gitCommit": self.revision},
                    }],
                },
                "runDetails": {"builder": {"id": self.builder}},
            },
        });
        serde_json::to_vec(&statement).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
