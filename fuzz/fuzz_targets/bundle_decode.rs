//! Bundles from untrusted bytes: decoding returns an engine or an error, and any engine it
//! returns decides without panicking. The first input byte picks how the rest is used:
//!
//! - `0`: the bytes as a bundle;
//! - `1`: a valid signed bundle with bytes flipped (`[pos_lo, pos_hi, xor]` triples), opened
//!   with its key trusted: every real change must be refused;
//! - `2`: the bytes as the payload of a well-formed unsigned bundle (manifest and digest
//!   recomputed), so postcard decoding itself is fuzzed;
//! - `3`: a valid payload with bytes flipped, truncated or extended, digest recomputed.

#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_engine::bundle::{FORMAT_VERSION, MAGIC, Manifest, parts};
use palisade_engine::{BundleInfo, BundleSigner, Scope, TrustedKeys, decode_bundle, open_bundle};
use sha2::{Digest, Sha256};

fn signer() -> BundleSigner {
    BundleSigner {
        key_id: "fuzz".into(),
        key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    }
}

fn seed_bundle() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let engine = common::engines().first().expect("an engine");
        palisade_engine::encode_signed(engine, &BundleInfo::default(), Some(&signer()))
            .expect("the fixture encodes")
    })
}

/// An unsigned, mesh-wide bundle around any payload.
fn with_header(payload: &[u8]) -> Vec<u8> {
    let manifest = Manifest {
        revision: Sha256::digest(payload).into(),
        scope: Scope::Mesh,
        inputs: vec![],
        key_id: None,
    };
    let manifest = postcard::to_allocvec(&manifest).expect("a manifest encodes");
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// Applies `[pos_lo, pos_hi, xor]` triples; a trailing pair `[len_lo, len_hi]` truncates
/// (or, past the end, extends with zeros).
fn mutate(base: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    let mut chunks = ops.chunks_exact(3);
    for c in chunks.by_ref() {
        if let [lo, hi, x] = c {
            let len = out.len().max(1);
            let pos = usize::from(u16::from_le_bytes([*lo, *hi])) % len;
            if let Some(b) = out.get_mut(pos) {
                *b ^= *x;
            }
        }
    }
    if let [lo, hi] = chunks.remainder() {
        out.resize(usize::from(u16::from_le_bytes([*lo, *hi])), 0);
    }
    out
}

fn decide_all(bytes: &[u8]) {
    if let Ok(engine) = decode_bundle(bytes) {
        common::exercise(&engine, &common::http_request());
        common::exercise(&engine, &common::tcp_request());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => decide_all(rest),
        1 => {
            let seed = seed_bundle();
            let bytes = mutate(seed, rest);
            let keys = TrustedKeys::from_keys(vec![("fuzz".into(), signer().key.verifying_key())]);
            let result = open_bundle(&bytes, &keys, &Scope::Mesh);
            if bytes != seed {
                assert!(result.is_err(), "a corrupted bundle was accepted");
            } else {
                assert!(result.is_ok(), "the seed bundle was refused");
            }
        }
        2 => decide_all(&with_header(rest)),
        _ => {
            let seed = seed_bundle();
            let len = parts(seed).map(|p| p.payload_len()).unwrap_or_default();
            let payload = seed.get(seed.len() - len..).unwrap_or_default();
            decide_all(&with_header(&mutate(payload, rest)));
        }
    }
});
