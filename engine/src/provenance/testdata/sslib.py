"""How sslib-envelope.json was made, and the reverse check: securesystemslib's DSSE
(secure-systems-lab, the DSSE authors' library) signs a SLSA v1 statement with the ed25519
key whose seed is 32 bytes of 3, and verifies an envelope `palisade attest` wrote.

    python3 -m venv venv && venv/bin/pip install "securesystemslib[crypto]==1.6.0"
    venv/bin/python sslib.py ../../../../examples/shop/provenance/shop-cart.intoto.json \
        ../../../../examples/shop/provenance/ci.pub > sslib-envelope.json
"""
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

statement = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "registry.example.com/shop/cart",
                 "digest": {"sha256": "c9cab907477e6ee1932739c11844d691a51649eaada0d1e219fde566ec790855"}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": "https://example.com/buildtypes/sslib/v1",
            "externalParameters": {"repository": "https://git.example.com/shop/cart", "ref": "refs/heads/main"},
            "resolvedDependencies": [{"uri": "git+https://git.example.com/shop/cart@refs/heads/main",
                                      "digest": {"gitCommit": "8e2d4f6a0c1b3e5d7f9a2c4e6b8d0f1a3c5e7b92"}}],
        },
        "runDetails": {"builder": {"id": "https://ci.example.com/builders/container@v1"}},
    },
}

private = Ed25519PrivateKey.from_private_bytes(bytes([3] * 32))
signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid="sslib"))
envelope = Envelope(json.dumps(statement).encode(), "application/vnd.in-toto+json", {})
envelope.sign(signer)
print(json.dumps(envelope.to_dict(), indent=2))

# The reverse: an envelope palisade made verifies with securesystemslib.
ours = Envelope.from_dict(json.load(open(sys.argv[1])))
raw = base64.b64decode(open(sys.argv[2]).read().strip())
key = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(raw), keyid="shop-ci-2026")
verified = ours.verify([key], 1)
print("palisade's envelope verified by securesystemslib with keys:", sorted(verified), file=sys.stderr)
