//! `palisade attest` and `palisade verify`: provenance envelopes (DSSE, in-toto Statement v1,
//! SLSA provenance v1) made and checked with the engine's `provenance` module.

use std::path::Path;

use palisade_engine::provenance::{
    ATTEST_BUILD_TYPE, Envelope, PAYLOAD_TYPE, Provenance, ProvenanceError, ProvenanceKey,
    ProvenanceRule, StatementSpec, image_sha256, parse_statement,
};
use serde::Serialize;

use crate::args::{AttestArgs, Format, VerifyArgs};
use crate::exit::Exit;
use crate::report::{Failure, print_result};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AttestResult {
    envelope: String,
    key_id: String,
    image_digest: String,
    builder: String,
    source: String,
    revision: String,
}

/// `palisade attest`: one statement, one signature.
pub fn attest(args: &AttestArgs, output: Format) -> Result<Exit, Failure> {
    let signer = crate::signing::signer(&args.key, &args.key_id)?;
    let (repository, revision) = args.source.rsplit_once('@').ok_or_else(|| {
        Failure::message(format!("`--source` is `URI@COMMIT`, got `{}`", args.source))
    })?;
    let spec = StatementSpec {
        name: args.name.clone(),
        digest: args.image_digest.clone(),
        builder: args.builder.clone(),
        build_type: ATTEST_BUILD_TYPE.into(),
        repository: repository.to_string(),
        git_ref: args.git_ref.clone(),
        revision: revision.to_string(),
    };
    let body = spec
        .to_json()
        .map_err(|e| Failure::message(format!("cannot attest: {e}")))?;
    let envelope = Envelope::sign(PAYLOAD_TYPE, &body, &signer.key_id, &signer.key);
    let mut text = serde_json::to_string_pretty(&envelope)
        .map_err(|e| Failure::message(format!("cannot encode the envelope: {e}")))?;
    text.push('\n');
    std::fs::write(&args.out, text)
        .map_err(|e| Failure::message(format!("cannot write `{}`: {e}", args.out.display())))?;
    let result = AttestResult {
        envelope: args.out.display().to_string(),
        key_id: signer.key_id,
        image_digest: args.image_digest.clone(),
        builder: args.builder.clone(),
        source: format!("{repository}@{}", args.git_ref),
        revision: revision.to_string(),
    };
    print_result(output, &result, || {
        format!(
            "wrote {}: {} built by {} from {} ({}), signed by key {}\n",
            result.envelope,
            result.image_digest,
            result.builder,
            result.source,
            result.revision,
            result.key_id
        )
    });
    Ok(Exit::Ok)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyResult {
    envelope: String,
    verified: bool,
    key_ids: Vec<String>,
    #[serde(flatten)]
    provenance: Provenance,
}

/// `ID=KEY` entries as provenance keys.
fn keys(entries: &[String]) -> Result<Vec<ProvenanceKey>, Failure> {
    let mut keys: Vec<ProvenanceKey> = Vec::new();
    for e in entries {
        let (id, key) = e
            .split_once('=')
            .ok_or_else(|| Failure::message(format!("a trusted key is `ID=KEY`, got `{e}`")))?;
        if keys.iter().any(|k| k.key_id == id) {
            return Err(Failure::message(format!("key id `{id}` is given twice")));
        }
        keys.push(ProvenanceKey::parse(id, key).map_err(Failure::message)?);
    }
    Ok(keys)
}

/// `palisade verify`: exit 0 when the envelope verifies and passes the checks asked for.
pub fn verify(args: &VerifyArgs, output: Format) -> Result<Exit, Failure> {
    let name = args.envelope.display().to_string();
    let refused = |e: ProvenanceError| Failure::message(format!("`{name}` is refused: {e}"));
    let text = read(&args.envelope)?;
    let keys = keys(&args.trusted_keys)?;
    let verified = Envelope::from_json(&text)
        .and_then(|e| e.verify(&keys))
        .map_err(refused)?;
    let provenance = parse_statement(&verified.body).map_err(refused)?;
    if let Some(digest) = &args.image_digest {
        let hex = image_sha256(digest).map_err(refused)?;
        if !provenance
            .subjects
            .iter()
            .any(|s| s.sha256.as_deref() == Some(hex))
        {
            let names: Vec<String> = provenance
                .subjects
                .iter()
                .filter_map(|s| s.sha256.as_ref().map(|d| format!("`sha256:{d}`")))
                .collect();
            return Err(refused(ProvenanceError::OtherSubject {
                digest: digest.clone(),
                subjects: names.join(", "),
            }));
        }
    }
    let rule = ProvenanceRule {
        builders: args.builders.clone(),
        sources: args.sources.clone(),
        keys: Vec::new(),
    };
    if !rule.builders.is_empty() && !rule.builders.contains(&provenance.builder) {
        return Err(refused(ProvenanceError::Builder {
            builder: provenance.builder.clone(),
            allowed: ticks(&rule.builders),
        }));
    }
    if !rule.sources.is_empty() && !rule.allows_source(&provenance.source) {
        return Err(refused(ProvenanceError::Source {
            from: provenance.source.to_string(),
            allowed: ticks(&rule.sources),
        }));
    }
    let result = VerifyResult {
        envelope: name,
        verified: true,
        key_ids: verified.key_ids,
        provenance,
    };
    print_result(output, &result, || {
        let p = &result.provenance;
        let mut s = format!(
            "{}: verified, signed by {}\nbuilder: {}\nsource: {} at {}\n",
            result.envelope,
            result.key_ids.join(", "),
            p.builder,
            p.source,
            p.source.revision
        );
        for subject in &p.subjects {
            let digest = subject
                .sha256
                .as_ref()
                .map_or_else(|| "(no sha256)".to_string(), |d| format!("sha256:{d}"));
            s.push_str(&format!("subject: {} {digest}\n", subject.name));
        }
        s
    });
    Ok(Exit::Ok)
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::message(format!("cannot read `{}`: {e}", path.display())))
}

fn ticks(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
