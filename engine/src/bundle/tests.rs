//! Bundle layout, signatures and scopes: each refusal a host must make, by name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;
use crate::{Options, SourceFile, compile, load};

const POLICY: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-get, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: [GET]}}]
";

fn engine() -> Engine {
    let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
    compile(&set, &Options::default()).unwrap()
}

fn signer(seed: u8, id: &str) -> BundleSigner {
    BundleSigner {
        key_id: id.into(),
        key: SigningKey::from_bytes(&[seed; 32]),
    }
}

fn trust(signers: &[&BundleSigner]) -> TrustedKeys {
    TrustedKeys::from_keys(
        signers
            .iter()
            .map(|s| (s.key_id.clone(), s.key.verifying_key()))
            .collect(),
    )
}

fn workload(ns: &str, name: &str) -> Scope {
    Scope::Workload {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn signed(info: &BundleInfo, s: &BundleSigner) -> Vec<u8> {
    encode_signed(&engine(), info, Some(s)).unwrap()
}

#[test]
fn an_unsigned_bundle_starts_with_the_magic_and_version_and_round_trips() {
    let bytes = encode_bundle(&engine()).unwrap();
    assert_eq!(&bytes[..4], b"PLSD");
    assert_eq!(&bytes[4..6], &4u16.to_le_bytes());
    let p = parts(&bytes).unwrap();
    assert_eq!(p.signature, None);
    assert_eq!(p.manifest.key_id, None);
    assert_eq!(p.manifest.scope, Scope::Mesh);
    // The revision is the payload's SHA-256, and the payload is the last bytes.
    let payload = &bytes[bytes.len() - p.payload_len()..];
    assert_eq!(
        p.manifest.revision,
        <[u8; 32]>::from(Sha256::digest(payload))
    );
    assert_eq!(digest_hex(&bytes), Some(hex(&p.manifest.revision)));
    let back = decode_bundle(&bytes).unwrap();
    assert_eq!(encode_bundle(&back).unwrap(), bytes);
}

#[test]
fn a_signed_bundle_opens_with_its_key_and_names_signer_scope_and_inputs() {
    let s = signer(7, "ci-2026");
    let mut info = BundleInfo {
        scope: Scope::Namespace("shop".into()),
        inputs: vec![],
    };
    info.input("z.yaml", b"zzz");
    info.input("a.yaml", b"aaa");
    let bytes = signed(&info, &s);
    let (_, manifest) = open_bundle(&bytes, &trust(&[&s]), &workload("shop", "cart")).unwrap();
    assert_eq!(manifest.key_id.as_deref(), Some("ci-2026"));
    assert_eq!(manifest.scope, Scope::Namespace("shop".into()));
    // Sorted by name, each with the SHA-256 of its bytes.
    let names: Vec<_> = manifest.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a.yaml", "z.yaml"]);
    assert_eq!(
        hex(&manifest.inputs[0].sha256),
        "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"
    );
}

#[test]
fn the_same_inputs_give_byte_identical_bundles_in_any_input_order() {
    let s = signer(1, "k");
    let mut a = BundleInfo::default();
    a.input("one", b"1");
    a.input("two", b"2");
    let mut b = BundleInfo::default();
    b.input("two", b"2");
    b.input("one", b"1");
    assert_eq!(signed(&a, &s), signed(&b, &s));
}

#[test]
fn every_host_refusal_is_named() {
    let good = signer(1, "good");
    let other = signer(2, "other");
    let info = BundleInfo {
        scope: workload("shop", "cart"),
        inputs: vec![],
    };
    let bytes = signed(&info, &good);
    let unsigned = encode_signed(&engine(), &info, None).unwrap();
    let cart = workload("shop", "cart");

    // A signature byte flipped.
    let sig_at = |b: &[u8]| b.len() - parts(b).unwrap().payload_len() - 64;
    let mut bad_sig = bytes.clone();
    bad_sig[sig_at(&bytes)] ^= 1;
    // The manifest re-written for the whole mesh, under the workload bundle's signature.
    let mut rescoped = encode_signed(&engine(), &BundleInfo::default(), Some(&good)).unwrap();
    let at = sig_at(&rescoped);
    rescoped[at..at + 64].copy_from_slice(&bytes[sig_at(&bytes)..sig_at(&bytes) + 64]);
    // A payload byte flipped.
    let mut bad_payload = bytes.clone();
    let last = bad_payload.len() - 1;
    bad_payload[last] ^= 1;

    let rows: Vec<(&str, &[u8], TrustedKeys, Scope, BundleError)> = vec![
        (
            "unsigned, keys configured",
            &unsigned,
            trust(&[&good]),
            cart.clone(),
            BundleError::Unsigned,
        ),
        (
            "signed by a key the host does not trust",
            &bytes,
            trust(&[&other]),
            cart.clone(),
            BundleError::UnknownKey {
                key_id: "good".into(),
            },
        ),
        (
            "a key id the host knows, with another key behind it",
            &bytes,
            TrustedKeys::from_keys(vec![("good".into(), other.key.verifying_key())]),
            cart.clone(),
            BundleError::BadSignature {
                key_id: "good".into(),
            },
        ),
        (
            "a signature byte flipped",
            &bad_sig,
            trust(&[&good]),
            cart.clone(),
            BundleError::BadSignature {
                key_id: "good".into(),
            },
        ),
        (
            "the scope widened to the mesh under the old signature",
            &rescoped,
            trust(&[&good]),
            cart.clone(),
            BundleError::BadSignature {
                key_id: "good".into(),
            },
        ),
        (
            "a payload byte flipped",
            &bad_payload,
            trust(&[&good]),
            cart.clone(),
            BundleError::Digest,
        ),
        (
            "for another workload",
            &bytes,
            trust(&[&good]),
            workload("shop", "frontend"),
            BundleError::WrongScope {
                bundle: cart.clone(),
                host: workload("shop", "frontend"),
            },
        ),
        (
            "a workload's bundle at a host that enforces the mesh",
            &unsigned,
            TrustedKeys::none(),
            Scope::Mesh,
            BundleError::WrongScope {
                bundle: cart.clone(),
                host: Scope::Mesh,
            },
        ),
    ];
    for (name, bytes, keys, host, want) in rows {
        assert_eq!(
            open_bundle(bytes, &keys, &host).map(|_| ()),
            Err(want),
            "{name}"
        );
    }
}

#[test]
fn rotation_accepts_either_of_two_trusted_keys() {
    let (old, new) = (signer(1, "2026-old"), signer(2, "2026-new"));
    let keys = trust(&[&old, &new]);
    for s in [&old, &new] {
        let bytes = signed(&BundleInfo::default(), s);
        assert!(
            open_bundle(&bytes, &keys, &Scope::Mesh).is_ok(),
            "{}",
            s.key_id
        );
    }
}

#[test]
fn no_keys_accepts_unsigned_and_signed_bundles_alike() {
    let bytes = signed(&BundleInfo::default(), &signer(3, "k"));
    assert!(open_bundle(&bytes, &TrustedKeys::none(), &Scope::Mesh).is_ok());
    let unsigned = encode_bundle(&engine()).unwrap();
    assert!(open_bundle(&unsigned, &TrustedKeys::none(), &Scope::Mesh).is_ok());
}

#[test]
fn every_truncation_and_a_hostile_manifest_length_are_refused_without_panic() {
    let bytes = signed(&BundleInfo::default(), &signer(1, "k"));
    for n in 0..bytes.len() {
        assert!(decode_bundle(&bytes[..n]).is_err(), "{n} bytes");
    }
    let mut huge = bytes.clone();
    huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_bundle(&huge).unwrap_err(),
        BundleError::Manifest("4294967295 bytes is too long".into())
    );
    let mut old = bytes;
    old[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        decode_bundle(&old).unwrap_err().to_string(),
        "unsupported bundle format version 2 (this build reads version 4)"
    );
}

#[test]
fn scopes_cover_as_documented() {
    let ns = |n: &str| Scope::Namespace(n.into());
    let rows = [
        (
            "mesh covers a workload",
            Scope::Mesh,
            workload("a", "x"),
            true,
        ),
        ("mesh covers the mesh", Scope::Mesh, Scope::Mesh, true),
        (
            "a namespace covers its workload",
            ns("a"),
            workload("a", "x"),
            true,
        ),
        ("a namespace covers itself", ns("a"), ns("a"), true),
        (
            "a namespace does not cover another's workload",
            ns("a"),
            workload("b", "x"),
            false,
        ),
        (
            "a namespace does not cover the mesh",
            ns("a"),
            Scope::Mesh,
            false,
        ),
        (
            "a workload covers itself",
            workload("a", "x"),
            workload("a", "x"),
            true,
        ),
        (
            "a workload does not cover its namespace",
            workload("a", "x"),
            ns("a"),
            false,
        ),
        (
            "a workload does not cover a namesake elsewhere",
            workload("a", "x"),
            workload("b", "x"),
            false,
        ),
    ];
    for (name, bundle, host, want) in rows {
        assert_eq!(bundle.covers(&host), want, "{name}");
    }
}

#[test]
fn scopes_parse_and_print_alike_and_refuse_what_is_not_one() {
    for s in ["mesh", "namespace:shop", "workload:shop/cart"] {
        assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
    }
    for bad in [
        "",
        "Mesh",
        "namespace:",
        "workload:shop",
        "workload:/cart",
        "workload:a/b/c",
        "ns:shop",
    ] {
        assert_eq!(
            bad.parse::<Scope>(),
            Err(BundleError::BadScope(bad.into())),
            "{bad:?}"
        );
    }
}

/// RFC 8032 section 7.1, TEST 1: an independent anchor that keys are read as the standard
/// writes them and signatures are plain ed25519.
#[test]
fn rfc_8032_test_1_verifies_through_our_key_reader() {
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let public = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    let key = parse_public_key(&BASE64.encode(&public)).unwrap();
    let sig: [u8; 64] = unhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065\
         224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )
    .try_into()
    .unwrap();
    assert!(key.verify(b"", &Signature::from_bytes(&sig)).is_ok());
    assert!(key.verify(b"x", &Signature::from_bytes(&sig)).is_err());
    let secret: [u8; 32] =
        unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .try_into()
            .unwrap();
    assert_eq!(SigningKey::from_bytes(&secret).verifying_key(), key);
}

#[test]
fn trusted_keys_refuse_what_is_not_a_key() {
    let good = public_key_base64(&signer(1, "k").key.verifying_key());
    let rows = [
        ("not base64", ("k", "!!!"), "trusted key `k`: not base64"),
        (
            "16 bytes",
            ("k", "AAAAAAAAAAAAAAAAAAAAAA=="),
            "trusted key `k`: 16 bytes, not the 32 of an ed25519 key",
        ),
        (
            "an empty id",
            ("", good.as_str()),
            "trusted key ``: key ids must be unique and not empty",
        ),
    ];
    for (name, entry, want) in rows {
        assert_eq!(
            TrustedKeys::parse([entry]).unwrap_err().to_string(),
            want,
            "{name}"
        );
    }
    assert!(TrustedKeys::parse([("k", good.as_str()), ("k", good.as_str())]).is_err());
    assert!(TrustedKeys::parse([("k", good.as_str())]).is_ok());
}
