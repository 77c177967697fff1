//! Bundles from untrusted bytes: decoding returns an engine or an error, and any engine it
//! returns decides without panicking. The first input byte picks how the rest is used:
//!
//! - `0`: the bytes as a bundle;
//! - `1`: a valid bundle with bytes flipped (`[pos_lo, pos_hi, xor]` triples) and the digest
//!   left alone: every real change must be refused;
//! - `2`: the bytes as the payload of a well-formed header (digest recomputed), so postcard
//!   decoding itself is fuzzed;
//! - `3`: a valid payload with bytes flipped, truncated or extended, digest recomputed.

#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_engine::bundle::{FORMAT_VERSION, MAGIC};
use palisade_engine::{decode_bundle, encode_bundle};
use sha2::{Digest, Sha256};

fn seed_bundle() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let engine = common::engines().first().expect("an engine");
        encode_bundle(engine).expect("the fixture encodes")
    })
}

const HEADER: usize = 4 + 2 + 32;

fn with_header(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
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
            let result = decode_bundle(&bytes);
            if bytes != seed {
                assert!(result.is_err(), "a corrupted bundle was accepted");
            } else {
                assert!(result.is_ok(), "the seed bundle was refused");
            }
        }
        2 => decide_all(&with_header(rest)),
        _ => {
            let payload = seed_bundle().get(HEADER..).unwrap_or_default();
            decide_all(&with_header(&mutate(payload, rest)));
        }
    }
});
