//! Signature checks for raw bearer tokens (`jwtToken` in `palisade eval`), as Envoy's
//! `jwt_authn` makes them: the engine finds the provider and the key, checks issuer, time and
//! audiences ([`palisade_engine::authn::verify_token`]); this checks the signature with `ring`
//! and gives the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use palisade_engine::authn::TokenVerifier;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// HS256/384/512 (`kty: oct`), RS256/384/512 (`kty: RSA`), ES256/384 (`kty: EC`), with the
/// system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingVerifier;

fn b64(jwk: &Value, field: &str) -> Option<Vec<u8>> {
    let s = jwk.get(field)?.as_str()?.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
        acc &= (1 << bits) - 1;
    }
    Some(out)
}

impl TokenVerifier for RingVerifier {
    fn verify(&self, alg: &str, jwk: &Value, input: &[u8], sig: &[u8]) -> bool {
        let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
        // A key that names its algorithm is used for that one only.
        if jwk
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|a| a != alg)
        {
            return false;
        }
        match (kty, alg) {
            ("oct", "HS256" | "HS384" | "HS512") => {
                let Some(k) = b64(jwk, "k") else { return false };
                let algorithm = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                ring::hmac::verify(&ring::hmac::Key::new(algorithm, &k), input, sig).is_ok()
            }
            ("RSA", "RS256" | "RS384" | "RS512") => {
                let (Some(n), Some(e)) = (b64(jwk, "n"), b64(jwk, "e")) else {
                    return false;
                };
                let params = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(params, input, sig)
                    .is_ok()
            }
            ("EC", "ES256" | "ES384") => {
                let (Some(x), Some(y)) = (b64(jwk, "x"), b64(jwk, "y")) else {
                    return false;
                };
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let params = if alg == "ES256" {
                    &signature::ECDSA_P256_SHA256_FIXED
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED
                };
                UnparsedPublicKey::new(params, &point)
                    .verify(input, sig)
                    .is_ok()
            }
            _ => false,
        }
    }

    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
