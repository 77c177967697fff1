//! JWTs for `requestPrincipals` and `request.auth.*`: the `envoy.filters.http.jwt_authn`
//! filter the HTTP listeners run before the golden RBAC filters, and HS256 tokens minted for
//! the probes.
//!
//! The filter has one provider ([`PROVIDER`]) with an inline JWKS holding one symmetric HS256
//! key ([`HS256_KEY`]). It does not check the issuer or the audiences (any `iss`/`aud` the
//! generator picks is accepted), and it writes the verified payload into the dynamic metadata
//! of `envoy.filters.http.jwt_authn` under the key `payload`, which is where Istio's generated
//! RBAC metadata matchers look (`[payload, iss]`, `[payload, aud]`, `[payload, nested1,
//! nested2]`, ...), with `scope` and `permission` split into lists as Istio always has them
//! (`normalize_payload_in_metadata`). Its rule requires the provider *or* no token at all
//! (`requires_any: [provider, allow_missing]`), so requests without a token still reach RBAC,
//! while a token Envoy cannot verify is answered with 401 instead of silently passing as "no
//! token" (the harness counts such answers as errors: the engine would have been given a
//! payload Envoy never saw). `forward` is left `false`, so RBAC does not see the
//! `Authorization` header, just as the engine request carries no such header.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The symmetric key of the provider (raw bytes; the JWKS carries it base64url-encoded).
pub const HS256_KEY: &[u8] = b"palisade-envoy-harness-hs256-key-0123456789";

/// The key id in the JWKS and in every token header.
pub const KEY_ID: &str = "palisade-harness";

/// The provider's name.
pub const PROVIDER: &str = "palisade";

/// `exp` of every token: 2100-01-01T00:00:00Z.
pub const EXPIRY: u64 = 4_102_444_800;

/// Unpadded base64url (RFC 4648 §5).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        }
    }
    out
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|e| Error(format!("HMAC key: {e}")))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// A compact HS256 JWS over this payload, signed with [`HS256_KEY`].
pub fn mint(payload: &Value) -> Result<String> {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": KEY_ID});
    let enc = |v: &Value| {
        serde_json::to_vec(v)
            .map(|b| base64url(&b))
            .map_err(|e| Error(format!("serialising JWT part: {e}")))
    };
    let signing_input = format!("{}.{}", enc(&header)?, enc(payload)?);
    let sig = hmac_sha256(HS256_KEY, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", base64url(&sig)))
}

/// The JWKS of the provider.
pub fn jwks() -> Value {
    json!({"keys": [{"kty": "oct", "alg": "HS256", "kid": KEY_ID, "k": base64url(HS256_KEY)}]})
}

/// The `envoy.filters.http.jwt_authn` HTTP filter (see the module documentation).
pub fn jwt_authn_filter() -> Value {
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                PROVIDER: {
                    "local_jwks": { "inline_string": jwks().to_string() },
                    "payload_in_metadata": "payload",
                    // As Istio configures every provider (`buildSpaceDelimitedClaims`): the
                    // engine reads a payload without RequestAuthentication the same way.
                    "normalize_payload_in_metadata": {
                        "space_delimited_claims": ["permission", "scope"],
                    },
                    "forward": false,
                },
            },
            "rules": [{
                "match": { "prefix": "/" },
                "requires": { "requires_any": { "requirements": [
                    { "provider_name": PROVIDER },
                    { "allow_missing": {} },
                ] } },
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn base64url_matches_rfc_4648_vectors_without_padding() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(raw.as_bytes()), enc);
        }
        // The URL-safe alphabet: 0xfb 0xff → "-_8" (standard base64 would be "+/8=").
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_token_has_three_parts_and_a_valid_signature() {
        let payload = json!({"iss": "i", "sub": "s", "aud": ["a", "b"], "exp": EXPIRY});
        let token = mint(&payload).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], base64url(payload.to_string().as_bytes()));
        let sig = hmac_sha256(HS256_KEY, format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
        assert_eq!(parts[2], base64url(&sig));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
    }
}
