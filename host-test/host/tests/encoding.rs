//! The host's encodings are the ones the plugin decodes (its pure decoding code, natively).

#![allow(clippy::unwrap_used)]

use palisade_wasm_host::envoy::{JWT_FILTER, filter_metadata, protobuf_struct};

#[test]
fn the_jwt_metadata_the_host_serves_is_the_payload_the_plugin_reads() {
    let claims = serde_json::json!({
        "iss": "https://issuer.example", "sub": "alice", "aud": ["a", "b"],
        "exp": 4102444800i64, "admin": true, "nested": {"groups": ["x"]},
    });
    let mut fields = serde_json::Map::new();
    fields.insert("payload".into(), claims.clone());
    let metadata = filter_metadata(JWT_FILTER, &protobuf_struct(&fields));
    assert_eq!(
        palisade_proxy_wasm::attributes::jwt_payload(&metadata).unwrap(),
        Some(claims)
    );
}
