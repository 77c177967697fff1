//! Envoy's attributes, as the proxy-wasm host hands them over, turned into an engine
//! [`Request`].
//!
//! The glue reads raw property bytes into [`RawAttributes`]; everything here is pure and
//! tested natively. Encodings, as observed on Envoy 1.40.0 (V8) with this plugin
//! (`plugin/proxy-wasm/tests/envoy.rs` checks each one end to end):
//!
//! | property | encoding |
//! |---|---|
//! | `source.address`, `destination.address` | UTF-8 `ip:port` (`[v6]:port` for IPv6) |
//! | `source.port`, `destination.port` | 8 bytes, little-endian signed integer |
//! | `connection.mtls` | 1 byte, 0 or 1 |
//! | `connection.uri_san_peer_certificate` | UTF-8, the first URI SAN; absent without a client certificate |
//! | `connection.requested_server_name` | UTF-8; empty (or absent) without SNI |
//! | `metadata` | a serialized `envoy.config.core.v3.Metadata` (protobuf); [`jwt_payload`] takes `filter_metadata["envoy.filters.http.jwt_authn"]` (a `google.protobuf.Struct`) and its `payload` |
//! | `metadata.filter_metadata.envoy.filters.http.jwt_authn` | proxy-wasm pairs (a CEL map), values untyped (strings raw, a number as 8 bytes of a double): not used, see [`paths::METADATA`] |
//! | `xds.node.metadata.<KEY>` | a string is UTF-8; `LABELS` is a map in pairs encoding (the legacy `node.metadata` path answers nothing) |
//!
//! Request headers come from the header map (`proxy_get_header_map_pairs`): one pair per
//! value, names lower-case, pseudo-headers (`:method`, `:path`, `:authority`) included; the
//! pseudo-headers become the request's method, path and host (see [`http_attributes`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use palisade_engine::{Endpoint, HttpAttributes, Protocol, Request};
use prost::Message as _;
use serde_json::{Map, Value};

use crate::config::Plugin;

/// A property that could not be read or decoded (the request is then denied: fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeError(pub String);

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AttributeError {}

fn bad(what: &str, why: impl fmt::Display) -> AttributeError {
    AttributeError(format!("cannot decode `{what}`: {why}"))
}

/// The property paths the glue reads, pre-serialised as `proxy_get_property` takes them: the
/// segments joined by NUL, no trailing NUL (so a request builds no path).
pub mod paths {
    /// `source.address`.
    pub const SOURCE_ADDRESS: &[u8] = b"source\0address";
    /// `source.port`.
    pub const SOURCE_PORT: &[u8] = b"source\0port";
    /// `destination.address`.
    pub const DESTINATION_ADDRESS: &[u8] = b"destination\0address";
    /// `destination.port`.
    pub const DESTINATION_PORT: &[u8] = b"destination\0port";
    /// `connection.mtls`.
    pub const MTLS: &[u8] = b"connection\0mtls";
    /// `connection.uri_san_peer_certificate`.
    pub const PEER_URI_SAN: &[u8] = b"connection\0uri_san_peer_certificate";
    /// `connection.requested_server_name`.
    pub const SNI: &[u8] = b"connection\0requested_server_name";
    /// The request's dynamic metadata (a serialized `envoy.config.core.v3.Metadata`), where
    /// `jwt_authn` puts the verified payload. Read whole rather than as
    /// `metadata.filter_metadata.envoy.filters.http.jwt_authn`: that path answers a CEL map in
    /// pairs form, which loses value types (a number is 8 untagged bytes).
    pub const METADATA: &[u8] = b"metadata";
    /// Istio's node metadata keys, under `xds.node.metadata` (Envoy 1.40 no longer answers
    /// the legacy top-level `node`).
    pub const NODE_NAMESPACE: &[u8] = b"xds\0node\0metadata\0NAMESPACE";
    /// `xds.node.metadata.WORKLOAD_NAME`.
    pub const NODE_WORKLOAD_NAME: &[u8] = b"xds\0node\0metadata\0WORKLOAD_NAME";
    /// `xds.node.metadata.LABELS`.
    pub const NODE_LABELS: &[u8] = b"xds\0node\0metadata\0LABELS";
    /// `xds.node.metadata.SERVICE_ACCOUNT`.
    pub const NODE_SERVICE_ACCOUNT: &[u8] = b"xds\0node\0metadata\0SERVICE_ACCOUNT";

    /// A path as messages name it, `source.address` (built only for an error or a log line).
    pub fn name(path: &[u8]) -> String {
        String::from_utf8_lossy(path).replace('\0', ".")
    }
}

/// The filter whose metadata carries the JWT payload.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";

/// The key under which `jwt_authn` stores the verified payload (`payload_in_metadata`).
pub const JWT_PAYLOAD_KEY: &str = "payload";

/// What the glue read from Envoy for one request or connection: raw property bytes
/// (`None` when the property is absent) and, for HTTP, the request header pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAttributes {
    /// `source.address`.
    pub source_address: Option<Vec<u8>>,
    /// `source.port`.
    pub source_port: Option<Vec<u8>>,
    /// `destination.address`.
    pub destination_address: Option<Vec<u8>>,
    /// `destination.port`.
    pub destination_port: Option<Vec<u8>>,
    /// `connection.mtls`.
    pub mtls: Option<Vec<u8>>,
    /// `connection.uri_san_peer_certificate`.
    pub peer_uri_san: Option<Vec<u8>>,
    /// `connection.requested_server_name`.
    pub sni: Option<Vec<u8>>,
    /// Request header pairs (HTTP only), one pair per value.
    pub headers: Option<Vec<(HeaderName, String)>>,
    /// The dynamic metadata, `metadata` (HTTP only).
    pub metadata: Option<Vec<u8>>,
}

/// A UTF-8 string property.
pub fn decode_string(what: &str, bytes: &[u8]) -> Result<String, AttributeError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| bad(what, e))
}

/// An integer property: 8 bytes, little-endian.
pub fn decode_int(what: &str, bytes: &[u8]) -> Result<i64, AttributeError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| bad(what, format!("expected 8 bytes, got {}", bytes.len())))?;
    Ok(i64::from_le_bytes(arr))
}

/// A port property (an integer in 0..=65535).
pub fn decode_port(what: &str, bytes: &[u8]) -> Result<u16, AttributeError> {
    let n = decode_int(what, bytes)?;
    u16::try_from(n).map_err(|_| bad(what, format!("{n} is not a port")))
}

/// A boolean property: one byte.
pub fn decode_bool(what: &str, bytes: &[u8]) -> Result<bool, AttributeError> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(bad(
            what,
            format!("expected one byte 0 or 1, got {bytes:?}"),
        )),
    }
}

/// Whether an address property carries a port, by its shape alone: `[v6]:port`, or exactly
/// one `:` (`ip:port`; a bare IPv6 address has several). Where [`decode_address`] reads the
/// address, this says whether it found a port; where it does not, the request fails closed
/// whatever this says. Lets the glue decide whether to read the port property without parsing
/// the address twice on every request.
pub fn has_port(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(b'[') => bytes.windows(2).any(|w| w == b"]:"),
        _ => bytes.iter().filter(|b| **b == b':').count() == 1,
    }
}

/// An address property: `ip:port`, `[v6]:port`, or a bare IP.
pub fn decode_address(what: &str, bytes: &[u8]) -> Result<(IpAddr, Option<u16>), AttributeError> {
    let s = std::str::from_utf8(bytes).map_err(|e| bad(what, e))?;
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    s.parse::<IpAddr>()
        .map(|ip| (ip, None))
        .map_err(|_| bad(what, format!("`{s}` is not an address")))
}

/// A request header's name: the pseudo-headers the request takes its method, host and path
/// from are static names (no allocation: see [`http_attributes`]), the others owned text.
pub type HeaderName = Cow<'static, str>;

/// The pseudo-headers that become [`HttpAttributes`]' `method`, `host` and `path`.
const PSEUDO: [&str; 3] = [":method", ":authority", ":path"];

/// `name` as a [`HeaderName`]: a pseudo-header of [`PSEUDO`] without an allocation.
fn header_name(name: &[u8]) -> HeaderName {
    match PSEUDO
        .iter()
        .find(|p| p.as_bytes().eq_ignore_ascii_case(name))
    {
        Some(p) => Cow::Borrowed(p),
        None => Cow::Owned(text(name)),
    }
}

/// Bytes as text: checked as UTF-8 first (the lossy conversion walks them in chunks, slower);
/// what is not UTF-8 is converted lossily.
fn text(b: &[u8]) -> String {
    std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b).into_owned(), str::to_owned)
}

/// The HTTP attributes from the request's header pairs: the first `:method`, `:authority` and
/// `:path` become `method`, `host` and `path` (moved, not copied); every other header is
/// grouped by lower-case name, each value kept separately, in arrival order. The
/// pseudo-headers are not also put in `headers`: the engine reads them only from the three
/// fields (a rule's `request.headers[:method]`, `[:authority]`, `[:path]` included; see
/// `Facts::header_values` in the engine), so a copy there could change no decision.
pub fn http_attributes(pairs: Vec<(HeaderName, String)>) -> HttpAttributes {
    let mut http = HttpAttributes::default();
    let mut taken = [false; PSEUDO.len()];
    for (name, value) in pairs {
        if let Some(i) = PSEUDO.iter().position(|p| name.eq_ignore_ascii_case(p)) {
            let field = match i {
                0 => &mut http.method,
                1 => &mut http.host,
                _ => &mut http.path,
            };
            if let Some(taken @ false) = taken.get_mut(i) {
                *field = value;
                *taken = true;
            }
            continue;
        }
        let mut name = name.into_owned();
        // Envoy's names are lower-case already: moved, not copied.
        name.make_ascii_lowercase();
        http.headers.entry(name).or_default().push(value);
    }
    http
}

/// `remote.ip` with `hops` trusted `x-forwarded-for` hops, as Envoy's `xff_num_trusted_hops`
/// with `use_remote_address: true`: 0 → the direct peer; N → the N-th address from the right
/// of `x-forwarded-for` (all values of the header joined, in order); the direct peer when
/// there are fewer than N addresses or that entry is not an IP address.
pub fn remote_ip(xff: &[String], hops: u32, source: Option<IpAddr>) -> Option<IpAddr> {
    if hops == 0 {
        return source;
    }
    let addresses: Vec<&str> = xff
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let n = usize::try_from(hops).unwrap_or(usize::MAX);
    addresses
        .len()
        .checked_sub(n)
        .and_then(|i| addresses.get(i))
        .and_then(|s| s.parse::<IpAddr>().ok())
        .or(source)
}

/// Walks the proxy-wasm pairs format (u32 count, count × (u32 key length, u32 value length),
/// then each key and value followed by a NUL), handing each pair to `f` in order, without
/// allocating. Returns the offset just past the last pair; `None` when the bytes are
/// truncated or malformed (`f` may then have seen the pairs before the fault).
fn visit_pairs<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<usize> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    // The size table must fit before any pair is read (a huge count is refused at once).
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    if at > bytes.len() {
        return None;
    }
    let mut sizes = 4usize;
    for _ in 0..count {
        let k = u32_at(sizes)?;
        let v = u32_at(sizes.checked_add(4)?)?;
        sizes = sizes.checked_add(8)?;
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at = at.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at = at.checked_add(1)?;
        f(key, value);
    }
    Some(at)
}

/// Whether everything after the pairs is padding: Envoy pads short maps to 30 bytes
/// ("prevent string inlining"), so trailing zeros are fine, anything else is not.
fn only_padding(bytes: &[u8], end: usize) -> bool {
    bytes
        .get(end..)
        .is_some_and(|rest| rest.iter().all(|b| *b == 0))
}

/// Decodes the proxy-wasm pairs format (see [`visit_pairs`]). `None` unless the bytes are
/// exactly one such map.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let end = visit_pairs(bytes, |k, v| out.push((k, v)))?;
    only_padding(bytes, end).then_some(out)
}

/// The request headers from the header map as `proxy_get_header_map_pairs` answers it (the
/// pairs format), keeping only the pairs whose name `keep` accepts, as owned strings (a value
/// that is not UTF-8 is converted lossily; a pseudo-header's name is static, see
/// [`HeaderName`]); the other pairs are skipped in place, without an allocation. No bytes is an empty map (the host may answer no buffer for one); truncated or
/// malformed bytes are an error (the request is then denied).
pub fn kept_headers(
    bytes: &[u8],
    keep: impl Fn(&[u8]) -> bool,
    capacity: usize,
) -> Result<Vec<(HeaderName, String)>, AttributeError> {
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    out.reserve(capacity);
    let end = visit_pairs(bytes, |k, v| {
        if keep(k) {
            out.push((header_name(k), text(v)));
        }
    });
    match end {
        Some(end) if only_padding(bytes, end) => Ok(out),
        _ => Err(AttributeError(
            "cannot decode the request headers: malformed header map".to_string(),
        )),
    }
}

/// A struct-like property as JSON: the proxy-wasm pairs form Envoy 1.40 uses for CEL maps
/// (values: nested maps as pairs, strings raw, numbers as 8 bytes, booleans as 1 byte — the
/// types are not tagged, so a value is read as a nested map when it parses as one, else as
/// a string), or a serialized `google.protobuf.Struct` (older Envoys).
pub fn decode_struct(what: &str, bytes: &[u8]) -> Result<Value, AttributeError> {
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if let Some(v) = pairs_to_json(bytes, 0) {
        return Ok(v);
    }
    let s = prost_types::Struct::decode(bytes).map_err(|e| bad(what, e))?;
    Ok(struct_to_json(s))
}

fn pairs_to_json(bytes: &[u8], depth: u32) -> Option<Value> {
    let pairs = decode_pairs(bytes)?;
    let mut map = Map::new();
    for (k, v) in pairs {
        let key = std::str::from_utf8(k).ok()?.to_string();
        let nested = if depth < 16 && v.len() >= 4 {
            pairs_to_json(v, depth.saturating_add(1))
        } else {
            None
        };
        let value = match nested {
            Some(n) => n,
            None => Value::String(String::from_utf8_lossy(v).into_owned()),
        };
        map.insert(key, value);
    }
    Some(Value::Object(map))
}

/// A `google.protobuf.Struct` as JSON.
pub fn struct_to_json(s: prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(Value::Null, |n| {
            // Whole numbers (JWT `exp`, `iat`) stay integers, as in the token.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    #[allow(
                        clippy::cast_possible_truncation,
                        reason = "checked whole and in range"
                    )]
                    let i = f as i64;
                    Value::from(i)
                }
                _ => Value::Number(n),
            }
        }),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

/// The JWT payload from the dynamic metadata (a serialized `envoy.config.core.v3.Metadata`):
/// `filter_metadata["envoy.filters.http.jwt_authn"].payload`, `None` when no token was
/// verified.
pub fn jwt_payload(metadata: &[u8]) -> Result<Option<Value>, AttributeError> {
    let Some(s) = filter_metadata(metadata, JWT_FILTER).map_err(|e| bad("metadata", e))? else {
        return Ok(None);
    };
    Ok(match struct_to_json(s) {
        Value::Object(mut m) => m.remove(JWT_PAYLOAD_KEY),
        _ => None,
    })
}

/// One filter's entry of `Metadata.filter_metadata` (field 1: `map<string, Struct>`, each
/// entry a message with the key as field 1 and the `Struct` as field 2).
fn filter_metadata(mut buf: &[u8], filter: &str) -> Result<Option<prost_types::Struct>, String> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        if tag != 1 || wire != WireType::LengthDelimited {
            skip_field(wire, tag, &mut buf, DecodeContext::default()).map_err(|e| e.to_string())?;
            continue;
        }
        let len = decode_varint(&mut buf).map_err(|e| e.to_string())?;
        let entry = usize::try_from(len)
            .ok()
            .and_then(|len| buf.get(..len))
            .ok_or("truncated map entry")?;
        let len = entry.len();
        buf = buf.get(len..).unwrap_or_default();
        let mut e = entry;
        let (mut key, mut value) = (None, None);
        while !e.is_empty() {
            let (tag, wire) = decode_key(&mut e).map_err(|e| e.to_string())?;
            if wire != WireType::LengthDelimited || !(tag == 1 || tag == 2) {
                skip_field(wire, tag, &mut e, DecodeContext::default())
                    .map_err(|e| e.to_string())?;
                continue;
            }
            let len = decode_varint(&mut e).map_err(|e| e.to_string())?;
            let field = usize::try_from(len)
                .ok()
                .and_then(|len| e.get(..len))
                .ok_or("truncated field")?;
            let len = field.len();
            e = e.get(len..).unwrap_or_default();
            if tag == 1 {
                key = Some(field);
            } else {
                value = Some(field);
            }
        }
        if key == Some(filter.as_bytes()) {
            return prost_types::Struct::decode(value.unwrap_or_default())
                .map(Some)
                .map_err(|e| e.to_string());
        }
    }
    Ok(None)
}

/// Istio's `LABELS` node metadata (a map of strings) as label pairs.
pub fn decode_labels(bytes: &[u8]) -> Result<BTreeMap<String, String>, AttributeError> {
    match decode_struct("node.metadata.LABELS", bytes)? {
        Value::Object(m) => Ok(m
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect()),
        _ => Ok(BTreeMap::new()),
    }
}

/// A string property, moved out of its buffer (no copy); empty is absent.
fn opt_string(what: &str, bytes: Option<Vec<u8>>) -> Result<Option<String>, AttributeError> {
    bytes
        .map(|b| String::from_utf8(b).map_err(|e| bad(what, e)))
        .transpose()
        .map(|s| s.filter(|s| !s.is_empty()))
}

/// Builds the engine request: the local workload is the destination.
pub fn build_request(raw: RawAttributes, plugin: &Plugin) -> Result<Request, AttributeError> {
    let (source_ip, source_port) = match &raw.source_address {
        Some(b) => {
            let (ip, port) = decode_address("source.address", b)?;
            (Some(ip), port)
        }
        None => (None, None),
    };
    let source_port = match &raw.source_port {
        Some(b) => Some(decode_port("source.port", b)?),
        None => source_port,
    };
    let (destination_ip, destination_port) = match &raw.destination_address {
        Some(b) => {
            let (ip, port) = decode_address("destination.address", b)?;
            (Some(ip), port)
        }
        None => (None, None),
    };
    let destination_port = match &raw.destination_port {
        Some(b) => Some(decode_port("destination.port", b)?),
        None => destination_port,
    };
    let principal = opt_string("connection.uri_san_peer_certificate", raw.peer_uri_san)?;
    let mtls = match &raw.mtls {
        Some(b) => decode_bool("connection.mtls", b)?,
        None => false,
    };
    let sni = opt_string("connection.requested_server_name", raw.sni)?;
    let mut request = Request {
        protocol: plugin.protocol,
        source: Endpoint {
            ip: source_ip,
            port: source_port,
            // A URI SAN only counts with a verified client certificate (mTLS).
            principal: principal.filter(|_| mtls),
            workload: None,
        },
        destination: Endpoint {
            ip: destination_ip,
            port: destination_port,
            principal: None,
            // The plugin decides in its local workload's precompiled view; only NetworkPolicy
            // looks the destination workload up again (its labels and named ports), so the
            // workload (namespace, name, labels: a few allocations) is cloned only then.
            workload: (!plugin.engine.network.is_empty()).then(|| plugin.workload.clone()),
        },
        remote_ip: source_ip,
        mtls: Some(mtls),
        sni,
        ..Request::default()
    };
    if plugin.protocol == Protocol::Http {
        let http = http_attributes(raw.headers.unwrap_or_default());
        let xff = http
            .headers
            .get("x-forwarded-for")
            .map(Vec::as_slice)
            .unwrap_or_default();
        request.remote_ip = remote_ip(xff, plugin.trusted_xff_hops, source_ip);
        request.http = Some(http);
        request.jwt = match &raw.metadata {
            Some(m) => jwt_payload(m)?,
            None => None,
        };
    }
    Ok(request)
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
    use crate::config::NodeMetadata;

    /// Encodes pairs as Envoy does (`PairsUtil::marshalPairs`).
    pub(crate) fn pairs(p: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (p.len() as u32).to_le_bytes().to_vec();
        for (k, v) in p {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in p {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    fn plugin(protocol: &str, hops: u32) -> Plugin {
        let json = serde_json::json!({
            "policy": "", "protocol": protocol, "trustedXffHops": hops,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
        });
        Plugin::configure(
            &crate::config::test_configuration(json),
            &NodeMetadata::default(),
        )
        .unwrap()
    }

    fn mtls_conn(principal: &str) -> RawAttributes {
        RawAttributes {
            source_address: Some(b"127.0.0.7:40000".to_vec()),
            source_port: Some(40000i64.to_le_bytes().to_vec()),
            destination_address: Some(b"127.0.0.1:8443".to_vec()),
            destination_port: Some(8443i64.to_le_bytes().to_vec()),
            mtls: Some(vec![1]),
            peer_uri_san: Some(principal.as_bytes().to_vec()),
            sni: Some(b"cart.shop".to_vec()),
            ..RawAttributes::default()
        }
    }

    fn plaintext_conn() -> RawAttributes {
        RawAttributes {
            source_address: Some(b"127.0.0.7:40000".to_vec()),
            destination_address: Some(b"127.0.0.1:8080".to_vec()),
            mtls: Some(vec![0]),
            sni: Some(Vec::new()),
            ..RawAttributes::default()
        }
    }

    #[test]
    fn scalar_encodings_decode_and_wrong_sizes_are_errors() {
        assert_eq!(decode_int("p", &80i64.to_le_bytes()), Ok(80));
        assert!(decode_int("p", &[1, 2]).is_err());
        assert!(decode_port("p", &70000i64.to_le_bytes()).is_err());
        assert_eq!(decode_bool("b", &[1]), Ok(true));
        assert_eq!(decode_bool("b", &[0]), Ok(false));
        assert!(decode_bool("b", &[2]).is_err());
        assert!(decode_string("s", &[0xff]).is_err());
    }

    #[test]
    fn addresses_decode_with_and_without_port() {
        let v4 = decode_address("a", b"10.0.0.1:80").unwrap();
        assert_eq!(v4, ("10.0.0.1".parse().unwrap(), Some(80)));
        let v6 = decode_address("a", b"[::1]:443").unwrap();
        assert_eq!(v6, ("::1".parse().unwrap(), Some(443)));
        assert_eq!(decode_address("a", b"::1").unwrap().1, None);
        assert!(decode_address("a", b"pipe:/x").is_err());
    }

    #[test]
    fn headers_group_by_lower_case_name_and_the_pseudo_headers_become_fields() {
        let h = http_attributes(vec![
            ("X-A".into(), "1".into()),
            (":path".into(), "/p".into()),
            ("x-a".into(), "2".into()),
            (":method".into(), "GET".into()),
            (":path".into(), "/second".into()),
            (":Authority".into(), "cart".into()),
        ]);
        assert_eq!(h.headers["x-a"], vec!["1", "2"]);
        assert_eq!(
            (h.method.as_str(), h.host.as_str(), h.path.as_str()),
            ("GET", "cart", "/p"),
            "the first value of each"
        );
        assert_eq!(h.headers.len(), 1, "the pseudo-headers only as fields");
        assert!(http_attributes(Vec::new()) == HttpAttributes::default());
    }

    #[test]
    fn a_rule_on_a_pseudo_header_by_name_still_decides_from_the_fields() {
        let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                      metadata: {name: by-header, namespace: shop}\n\
                      spec:\n  action: ALLOW\n  rules:\n  - when:\n\
                      \x20   - {key: \"request.headers[:method]\", values: [GET]}\n\
                      \x20   - {key: \"request.headers[:authority]\", values: [cart]}\n\
                      \x20   - {key: \"request.headers[:path]\", values: [/ok]}\n";
        let json = serde_json::json!({
            "policy": policy, "protocol": "http",
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
        });
        let p = Plugin::configure(
            &crate::config::test_configuration(json),
            &NodeMetadata::default(),
        )
        .unwrap();
        let request = |method: &str, path: &str| {
            let mut raw = plaintext_conn();
            let map = pairs(&[
                (b":method", method.as_bytes()),
                (b":authority", b"cart"),
                (b":path", path.as_bytes()),
                (b"user-agent", b"x"),
            ]);
            raw.headers = Some(kept_headers(&map, |n| p.keeps_header(n), 4).unwrap());
            build_request(raw, &p).unwrap()
        };
        let ok = request("GET", "/ok");
        assert!(ok.http.as_ref().unwrap().headers.is_empty());
        assert!(p.decide(&ok).allowed());
        assert!(!p.decide(&request("POST", "/ok")).allowed());
        assert!(!p.decide(&request("GET", "/no")).allowed());
    }

    #[test]
    fn remote_ip_counts_trusted_hops_from_the_right() {
        let src = Some("127.0.0.9".parse().unwrap());
        let xff = vec!["1.1.1.1, 2.2.2.2".to_string(), "3.3.3.3".to_string()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(remote_ip(&xff, 0, src), src, "no trusted hop: the peer");
        assert_eq!(remote_ip(&xff, 1, src), ip("3.3.3.3"));
        assert_eq!(remote_ip(&xff, 3, src), ip("1.1.1.1"));
        assert_eq!(remote_ip(&xff, 4, src), src, "fewer addresses than hops");
        assert_eq!(remote_ip(&["junk".into()], 1, src), src, "not an address");
    }

    #[test]
    fn pairs_decode_including_envoys_padding_and_reject_garbage() {
        let b = pairs(&[(b"a", b"1"), (b"bb", b"22")]);
        let p = decode_pairs(&b).unwrap();
        assert_eq!(p, vec![(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b"22"[..])]);
        let mut padded = pairs(&[(b"k", b"v")]);
        padded.resize(30, 0);
        assert_eq!(decode_pairs(&padded).unwrap().len(), 1);
        assert!(decode_pairs(b"\x05\x00\x00\x00").is_none());
        assert!(decode_pairs(b"ab").is_none());
    }

    #[test]
    fn the_header_map_keeps_only_the_named_headers_in_arrival_order() {
        let b = pairs(&[
            (b":method", b"GET"),
            (b"user-agent", b"curl"),
            (b":path", b"/a"),
            (b"x-tenant", b"t1"),
            (b"x-tenant", b"t2"),
            (b"x-bin", b"\xff"),
        ]);
        let keep = |n: &[u8]| [&b":method"[..], b":path", b"x-tenant", b"x-bin"].contains(&n);
        let h = kept_headers(&b, keep, 4).unwrap();
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        assert_eq!(
            h,
            [
                (":method", "GET"),
                (":path", "/a"),
                ("x-tenant", "t1"),
                ("x-tenant", "t2"),
                ("x-bin", "\u{fffd}"),
            ],
            "user-agent dropped, a value that is not UTF-8 converted lossily"
        );
        // No buffer and an empty map are both no headers; padding is fine.
        assert_eq!(kept_headers(&[], keep, 0).unwrap(), vec![]);
        assert_eq!(kept_headers(&pairs(&[]), keep, 0).unwrap(), vec![]);
        let mut padded = pairs(&[(b":path", b"/")]);
        padded.resize(40, 0);
        assert_eq!(kept_headers(&padded, keep, 1).unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_or_truncated_header_map_is_an_error() {
        let keep = |_: &[u8]| true;
        let good = pairs(&[(b":method", b"GET"), (b":path", b"/p")]);
        // Every truncation of a valid map is refused (never a panic, never a partial map).
        for len in 1..good.len() {
            assert!(kept_headers(&good[..len], keep, 2).is_err(), "cut at {len}");
        }
        // A missing NUL after a key, and after a value.
        let mut no_nul = good.clone();
        let key_end = 4 + 2 * 8 + b":method".len();
        no_nul[key_end] = b'x';
        assert!(kept_headers(&no_nul, keep, 2).is_err());
        let mut no_nul = good.clone();
        no_nul[key_end + 1 + 3] = b'x';
        assert!(kept_headers(&no_nul, keep, 2).is_err());
        // Trailing bytes that are not padding, a count the bytes cannot hold, sizes that
        // overflow.
        let mut trailing = good.clone();
        trailing.push(b'z');
        assert!(kept_headers(&trailing, keep, 2).is_err());
        assert!(kept_headers(&u32::MAX.to_le_bytes(), keep, 2).is_err());
        let mut huge = 1u32.to_le_bytes().to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        huge.extend(u32::MAX.to_le_bytes());
        huge.extend([0; 8]);
        assert!(kept_headers(&huge, keep, 2).is_err());
        assert!(kept_headers(&[1, 0], keep, 2).is_err());
        // Dropped headers are parsed as strictly as kept ones.
        assert!(kept_headers(&good[..good.len() - 1], |_| false, 0).is_err());
    }

    #[test]
    fn property_paths_are_nul_joined_and_named_with_dots() {
        assert_eq!(paths::SOURCE_ADDRESS, b"source\0address");
        assert_eq!(paths::name(paths::SOURCE_ADDRESS), "source.address");
        assert_eq!(paths::name(paths::NODE_LABELS), "xds.node.metadata.LABELS");
        assert_eq!(paths::name(paths::METADATA), "metadata");
    }

    /// The `metadata` property Envoy 1.40 answered after `jwt_authn` verified a token with
    /// `{"group": "admins", "iss": "https://issuer.example", "sub": "alice", "exp": 4102444800}`.
    const ENVOY_METADATA_HEX: &str = "0a85010a1c656e766f792e66696c746572732e687474702e6a77745f617574686e12650a630a077061796c6f616412582a560a110a0567726f757012081a0661646d696e730a1f0a0369737312181a1668747470733a2f2f6973737565722e6578616d706c650a0e0a0373756212071a05616c6963650a100a03657870120911000000e0ca90ee41";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_jwt_payload_reads_from_envoys_metadata_protobuf_with_types_kept() {
        let p = jwt_payload(&unhex(ENVOY_METADATA_HEX)).unwrap().unwrap();
        assert_eq!(
            p,
            serde_json::json!({"group": "admins", "iss": "https://issuer.example", "sub": "alice", "exp": 4102444800i64})
        );
        assert_eq!(jwt_payload(&[]).unwrap(), None, "no metadata");
        assert!(jwt_payload(&[0x0a, 0x05, 0x0a]).is_err(), "truncated");
    }

    #[test]
    fn a_struct_decodes_from_pairs_or_protobuf() {
        let v = decode_struct("s", &pairs(&[(b"iss", b"issuer")])).unwrap();
        assert_eq!(v, serde_json::json!({"iss": "issuer"}));
        use prost_types::{Struct, Value as PValue, value::Kind};
        let s = Struct {
            fields: [(
                "admin".to_string(),
                PValue {
                    kind: Some(Kind::BoolValue(true)),
                },
            )]
            .into(),
        };
        let v = decode_struct("s", &s.encode_to_vec()).unwrap();
        assert_eq!(v, serde_json::json!({"admin": true}));
    }

    #[test]
    fn istio_labels_decode_from_pairs() {
        let l = decode_labels(&pairs(&[(b"app", b"cart"), (b"version", b"v1")])).unwrap();
        assert_eq!(l["app"], "cart");
        assert_eq!(l["version"], "v1");
    }

    #[test]
    fn an_mtls_connection_carries_its_principal_and_the_local_workload() {
        let r = build_request(
            mtls_conn("spiffe://cluster.local/ns/shop/sa/frontend"),
            &plugin("tcp", 0),
        )
        .unwrap();
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(
            r.source.principal.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/frontend")
        );
        assert_eq!(r.mtls, Some(true));
        assert_eq!(r.source.port, Some(40000));
        assert_eq!(r.destination.port, Some(8443));
        assert_eq!(r.sni.as_deref(), Some("cart.shop"));
        // Only NetworkPolicy looks the destination workload up again; there is none here.
        assert!(r.destination.workload.is_none());
        assert!(r.http.is_none());
    }

    #[test]
    fn the_local_workload_is_carried_when_network_policies_look_it_up() {
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                      metadata: {name: deny-all, namespace: shop}\n\
                      spec: {podSelector: {}, policyTypes: [Ingress]}\n";
        let json = serde_json::json!({
            "policy": policy, "protocol": "tcp",
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
        });
        let p = Plugin::configure(
            &crate::config::test_configuration(json),
            &NodeMetadata::default(),
        )
        .unwrap();
        let r = build_request(mtls_conn("spiffe://cluster.local/ns/shop/sa/frontend"), &p).unwrap();
        let w = r.destination.workload.clone().unwrap();
        assert_eq!(
            (w.namespace.as_str(), w.labels["app"].as_str()),
            ("shop", "cart")
        );
        // And the NetworkPolicy decides with it: the workload is isolated for ingress.
        assert!(!p.decide(&r).allowed());
    }

    #[test]
    fn a_plaintext_request_has_no_principal_and_takes_http_attributes_from_headers() {
        let mut raw = plaintext_conn();
        raw.headers = Some(vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/api?x=1".into()),
            (":authority".into(), "cart:8080".into()),
            ("x-forwarded-for".into(), "9.9.9.9".into()),
        ]);
        let r = build_request(raw, &plugin("http", 1)).unwrap();
        assert_eq!(r.source.principal, None);
        assert_eq!(r.mtls, Some(false));
        assert_eq!(r.sni, None, "empty SNI is no SNI");
        assert_eq!(r.source.port, Some(40000), "port from the address");
        assert_eq!(r.remote_ip, Some("9.9.9.9".parse().unwrap()));
        let h = r.http.unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.host.as_str()),
            ("GET", "/api?x=1", "cart:8080")
        );
    }

    #[test]
    fn a_corrupt_property_is_an_error_not_a_guess() {
        let mut raw = plaintext_conn();
        raw.mtls = Some(vec![7]);
        let e = build_request(raw, &plugin("tcp", 0)).unwrap_err();
        assert!(e.0.contains("connection.mtls"), "{e}");
    }

    proptest::proptest! {
        /// Wherever `decode_address` reads an address, `has_port` says whether it found a
        /// port: for IPv4 and IPv6, with and without one, as Envoy writes them.
        #[test]
        fn has_port_agrees_with_decode_address(
            v4 in proptest::array::uniform4(0u8..),
            v6 in proptest::array::uniform8(0u16..),
            port in proptest::option::of(0u16..),
            six in proptest::bool::ANY,
        ) {
            let ip: IpAddr = if six { v6.into() } else { v4.into() };
            let text = match port {
                Some(p) => SocketAddr::new(ip, p).to_string(),
                None => ip.to_string(),
            };
            let decoded = decode_address("a", text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(has_port(text.as_bytes()), decoded.1.is_some(), "{}", text);
        }
    }
}
