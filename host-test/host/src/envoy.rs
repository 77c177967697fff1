//! An engine [`Request`] as Envoy 1.40 presents it to a proxy-wasm filter: properties and
//! request headers.
//!
//! | property | encoding (Envoy's `serializeValue`) |
//! |---|---|
//! | `source.address`, `destination.address` | `ip:port` (`[v6]:port`); the bare IP when the request has no port |
//! | `source.port`, `destination.port` | 8 bytes, little-endian integer |
//! | `connection.mtls` | 1 byte, 0 or 1 |
//! | `connection.uri_san_peer_certificate` | the principal (the first URI SAN), when the request has one |
//! | `connection.requested_server_name` | the SNI; empty without one, as Envoy gives it |
//! | `metadata` | the dynamic metadata, a serialized `envoy.config.core.v3.Metadata`: `filter_metadata["envoy.filters.http.jwt_authn"]` is the `google.protobuf.Struct` `{payload: <claims>}` (HTTP, when the request has verified claims) |
//! | `request.method`, `request.path`, `request.url_path`, `request.host`, `request.scheme` | strings (HTTP) |
//!
//! The whole `metadata` message is served, as Envoy 1.40 serializes a message-typed
//! property, so that every claim keeps its type (lists, numbers, booleans); the deeper path
//! `metadata.filter_metadata.<filter>` (untyped pairs in Envoy 1.40) is not served.
//!
//! Headers: `:authority`, `:path`, `:method`, `:scheme` first, then every header of the
//! request, one pair per value, in name order.
//!
//! The client addresses, as Envoy shows them on an Istio listener (`docs/envoy-gateway.md`):
//! when the request's original client (`remoteIp`) is its direct peer, or it has none, the
//! request is shown as a sidecar shows one without `x-forwarded-for`: `source.address` is the
//! peer's `ip:port`. When they differ (HTTP), it is shown as an Istio gateway with one trusted
//! proxy (`use_remote_address: true`, `xff_num_trusted_hops: 1`; the plugin is configured with
//! `numTrustedProxies: 1`, [`trusted_proxies`]) shows it: `source.address` is `<client>:0`
//! (the address the connection manager took from `x-forwarded-for`), and `x-forwarded-for`
//! is one value, the request's own entries, then the client, then the peer (which Envoy
//! appends). A gateway always has a local address: when the request names none, the
//! documentation address [`STAND_IN_DESTINATION`] is shown. A peer the plugin cannot tell
//! from that header is listed by [`hidden_peer`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use palisade_engine::{HttpAttributes, Protocol, Request};
use serde_json::Value;

use crate::abi::property_path;

/// Properties keyed by path segments (stored NUL-joined, as the guest asks for them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyMap(BTreeMap<Vec<u8>, Vec<u8>>);

impl PropertyMap {
    /// Sets a property.
    pub fn insert(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        self.0.insert(property_path(path), value.into());
    }

    /// A property by segments.
    pub fn get(&self, path: &[&str]) -> Option<&[u8]> {
        self.get_raw(&property_path(path))
    }

    /// A property by its NUL-joined path.
    pub fn get_raw(&self, path: &[u8]) -> Option<&[u8]> {
        self.0.get(path).map(Vec::as_slice)
    }

    /// The map, NUL-joined paths to values.
    pub fn into_inner(self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.0
    }
}

/// What one stream shows the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInput {
    /// The stream's properties.
    pub properties: PropertyMap,
    /// Request header pairs (HTTP), pseudo-headers first.
    pub request_headers: Vec<(String, String)>,
    /// The request body (HTTP; empty: the headers end the stream).
    pub request_body: Vec<u8>,
    /// The first bytes from the client (TCP).
    pub downstream_data: Vec<u8>,
}

/// The `numTrustedProxies` the plugin is configured with for this request: 1 (a gateway with
/// one trusted proxy) when the original client differs from the direct peer, else 0 (a
/// sidecar: the option is not set).
pub fn trusted_proxies(request: &Request) -> u32 {
    match request.remote_ip {
        Some(r) if Some(r) != request.source.ip => 1,
        _ => 0,
    }
}

/// The local address shown to the plugin for a request whose original client differs from its
/// peer and that names no destination address (TEST-NET-1; `192.0.2.2` when that is the peer).
pub const STAND_IN_DESTINATION: [u8; 4] = [192, 0, 2, 1];

/// The destination address shown for a request shown as at a gateway.
fn shown_destination(request: &Request) -> Option<IpAddr> {
    request.destination.ip.or_else(|| {
        (trusted_proxies(request) > 0).then(|| {
            let stand_in = IpAddr::from(STAND_IN_DESTINATION);
            if request.source.ip == Some(stand_in) {
                IpAddr::from([192, 0, 2, 2])
            } else {
                stand_in
            }
        })
    })
}

/// Why the plugin cannot know this request's direct peer when it is shown as at a gateway
/// (its `ipBlocks` and `source.ip` then fail closed, where the native engine decides): no peer;
/// a peer of exactly `127.0.0.1` or `::1` (Envoy appends its own address instead); or a peer
/// that is neither in 127/8 nor distinct from a non-loopback destination (it could be that
/// address). `None` when the peer is known or the request is not shown as at a gateway.
pub fn hidden_peer(request: &Request) -> Option<String> {
    if request.protocol != Protocol::Http || trusted_proxies(request) == 0 {
        return None;
    }
    let Some(peer) = request.source.ip else {
        return Some("an original client without a direct peer".into());
    };
    let loopback_v4 = matches!(peer, IpAddr::V4(v4) if v4.is_loopback());
    let canonical =
        peer == IpAddr::from([127, 0, 0, 1]) || peer == IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    let destination = shown_destination(request);
    let known =
        !canonical && (loopback_v4 || destination.is_some_and(|d| !d.is_loopback() && d != peer));
    (!known).then(|| {
        format!(
            "at a gateway the plugin cannot tell the direct peer {peer} from Envoy's own address \
             (the destination is {})",
            destination.map_or_else(|| "unknown".to_string(), |d| d.to_string())
        )
    })
}

/// Where a request's properties and headers go: a [`StreamInput`] (a map per stream), or the
/// host's per-VM stream state (buffers reused from one stream to the next, so that replaying
/// many requests does not allocate a map per request). One encoding ([`encode_request`]) feeds
/// both.
pub(crate) trait StreamSink {
    /// Sets a property (NUL-joined path); `value` writes its bytes into an empty buffer.
    fn property(&mut self, path: &[u8], value: impl FnOnce(&mut Vec<u8>));
    /// Appends a request header pair.
    fn header(&mut self, name: &[u8], value: &[u8]);
}

/// `ip:port`, `[v6]:port`, or the bare address without a port.
fn address(out: &mut Vec<u8>, ip: IpAddr, port: Option<u16>) {
    match ip {
        // The common case, written digit by digit: `fmt` costs a replay more than the rest
        // of a record's properties together.
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, octet.into());
            }
            if let Some(p) = port {
                out.push(b':');
                decimal(out, p);
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(_) => {
            let _ = match port {
                Some(p) => write!(out, "{}", SocketAddr::new(ip, p)),
                None => write!(out, "{ip}"),
            };
        }
    }
}

/// `n` in decimal, without leading zeros.
fn decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

fn int(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&i64::from(n).to_le_bytes());
}

/// The properties and headers of an engine request, as Envoy 1.40 would show them.
pub(crate) fn encode_request(request: &Request, s: &mut impl StreamSink) {
    let src = &request.source;
    let dst = &request.destination;
    // At a gateway (see the module documentation): the client, port 0.
    let gateway = request.protocol == Protocol::Http && trusted_proxies(request) > 0;
    let (source, source_port) = match (gateway, request.remote_ip) {
        (true, Some(client)) => (Some(client), Some(0)),
        _ => (src.ip, src.port),
    };
    if let Some(ip) = source {
        s.property(b"source\0address", |b| address(b, ip, source_port));
    }
    if let Some(port) = source_port {
        s.property(b"source\0port", |b| int(b, port));
    }
    if let Some(ip) = shown_destination(request) {
        s.property(b"destination\0address", |b| address(b, ip, dst.port));
    }
    if let Some(port) = dst.port {
        s.property(b"destination\0port", |b| int(b, port));
    }
    s.property(b"connection\0mtls", |b| b.push(u8::from(request.is_mtls())));
    if let Some(principal) = &src.principal {
        s.property(b"connection\0uri_san_peer_certificate", |b| {
            b.extend_from_slice(principal.as_bytes());
        });
    }
    s.property(b"connection\0requested_server_name", |b| {
        b.extend_from_slice(request.sni.as_deref().unwrap_or_default().as_bytes());
    });
    if request.protocol != Protocol::Http {
        return;
    }
    let none = HttpAttributes::default();
    let http = request.http.as_ref().unwrap_or(&none);
    s.header(b":authority", http.host.as_bytes());
    s.header(b":path", http.path.as_bytes());
    s.header(b":method", http.method.as_bytes());
    s.header(b":scheme", b"http");
    for (name, values) in &http.headers {
        if gateway && name.eq_ignore_ascii_case("x-forwarded-for") {
            continue;
        }
        for v in values {
            s.header(name.as_bytes(), v.as_bytes());
        }
    }
    if gateway && let Some(client) = request.remote_ip {
        // One value, as Envoy joins repeated lines: the request's entries, the client (the
        // entry a gateway with one trusted proxy takes), then the peer Envoy appends.
        let mut xff = Vec::new();
        for v in http
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
            .flat_map(|(_, v)| v)
        {
            xff.extend_from_slice(v.as_bytes());
            xff.push(b',');
        }
        address(&mut xff, client, None);
        if let Some(peer) = src.ip {
            xff.push(b',');
            address(&mut xff, peer, None);
        }
        s.header(b"x-forwarded-for", &xff);
    }
    let url_path = http.path.split('?').next().unwrap_or_default();
    s.property(b"request\0method", |b| {
        b.extend_from_slice(http.method.as_bytes());
    });
    s.property(b"request\0path", |b| {
        b.extend_from_slice(http.path.as_bytes())
    });
    s.property(b"request\0url_path", |b| {
        b.extend_from_slice(url_path.as_bytes());
    });
    s.property(b"request\0host", |b| {
        b.extend_from_slice(http.host.as_bytes())
    });
    s.property(b"request\0scheme", |b| b.extend_from_slice(b"http"));
    if let Some(claims) = &request.jwt {
        s.property(b"metadata", |b| {
            b.extend(filter_metadata(
                JWT_FILTER,
                &protobuf_struct_of([("payload", claims)]),
            ));
        });
    }
}

impl StreamSink for StreamInput {
    fn property(&mut self, path: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        let mut v = Vec::new();
        value(&mut v);
        self.properties.0.insert(path.to_vec(), v);
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        self.request_headers.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

impl StreamInput {
    /// The properties and headers of an engine request, as Envoy 1.40 would show them.
    pub fn from_request(request: &Request) -> StreamInput {
        let mut input = StreamInput::default();
        encode_request(request, &mut input);
        input
    }
}

/// The filter whose dynamic metadata carries the verified JWT payload.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";

/// An `envoy.config.core.v3.Metadata` with one `filter_metadata` entry (field 1:
/// `map<string, google.protobuf.Struct>`).
pub fn filter_metadata(filter: &str, serialized_struct: &[u8]) -> Vec<u8> {
    let mut entry = Vec::new();
    len_delimited(&mut entry, 1, filter.as_bytes());
    len_delimited(&mut entry, 2, serialized_struct);
    let mut out = Vec::new();
    len_delimited(&mut out, 1, &entry);
    out
}

// ---------------------------------------------------------------------------------------
// google.protobuf.Struct, encoded by hand (a handful of fields; no protobuf dependency).

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = u8::try_from(v & 0x7f).unwrap_or(0);
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn len_delimited(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    out.extend(bytes);
}

/// A JSON object as a serialized `google.protobuf.Struct` (`fields`: map<string, Value> = 1).
pub fn protobuf_struct(fields: &serde_json::Map<String, Value>) -> Vec<u8> {
    protobuf_struct_of(fields.iter().map(|(k, v)| (k.as_str(), v)))
}

/// A `google.protobuf.Struct` of these fields, in order.
fn protobuf_struct_of<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        let mut entry = Vec::new();
        len_delimited(&mut entry, 1, k.as_bytes());
        len_delimited(&mut entry, 2, &protobuf_value(v));
        len_delimited(&mut out, 1, &entry);
    }
    out
}

/// A JSON value as a serialized `google.protobuf.Value` (null 1, number 2, string 3, bool 4,
/// struct 5, list 6).
fn protobuf_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::Null => {
            tag(&mut out, 1, 0);
            varint(&mut out, 0);
        }
        Value::Number(n) => {
            tag(&mut out, 2, 1);
            out.extend(n.as_f64().unwrap_or(0.0).to_le_bytes());
        }
        Value::String(s) => len_delimited(&mut out, 3, s.as_bytes()),
        Value::Bool(b) => {
            tag(&mut out, 4, 0);
            varint(&mut out, u64::from(*b));
        }
        Value::Object(m) => len_delimited(&mut out, 5, &protobuf_struct(m)),
        Value::Array(items) => {
            let mut list = Vec::new();
            for item in items {
                len_delimited(&mut list, 1, &protobuf_value(item));
            }
            len_delimited(&mut out, 6, &list);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn request(json: serde_json::Value) -> Request {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn connection_properties_are_encoded_as_envoy_encodes_them() {
        let r = request(serde_json::json!({
            "source": {"ip": "10.0.0.1", "port": 40000, "principal": "spiffe://cluster.local/ns/a/sa/b"},
            "destination": {"ip": "fd00::1", "port": 8080},
            "http": {"method": "GET", "host": "h", "path": "/p?q=1"},
        }));
        let s = StreamInput::from_request(&r);
        let p = &s.properties;
        assert_eq!(p.get(&["source", "address"]), Some(&b"10.0.0.1:40000"[..]));
        assert_eq!(
            p.get(&["source", "port"]),
            Some(&40000i64.to_le_bytes()[..])
        );
        assert_eq!(
            p.get(&["destination", "address"]),
            Some(&b"[fd00::1]:8080"[..])
        );
        assert_eq!(p.get(&["connection", "mtls"]), Some(&[1u8][..]));
        assert_eq!(
            p.get(&["connection", "requested_server_name"]),
            Some(&b""[..])
        );
        assert_eq!(p.get(&["request", "url_path"]), Some(&b"/p"[..]));
        assert_eq!(
            s.request_headers.first(),
            Some(&(":authority".to_string(), "h".to_string()))
        );
    }

    #[test]
    fn a_different_original_client_is_shown_as_at_a_gateway_with_one_trusted_proxy() {
        let r = request(serde_json::json!({
            "source": {"ip": "10.0.0.1", "port": 40000}, "remoteIp": "203.0.113.7",
            "destination": {"ip": "10.0.0.5", "port": 8080},
            "http": {"headers": {"x-forwarded-for": "1.1.1.1"}},
        }));
        assert_eq!(trusted_proxies(&r), 1);
        assert_eq!(hidden_peer(&r), None);
        let s = StreamInput::from_request(&r);
        let xff: Vec<&str> = s
            .request_headers
            .iter()
            .filter(|(k, _)| k == "x-forwarded-for")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(xff, vec!["1.1.1.1,203.0.113.7,10.0.0.1"]);
        let p = &s.properties;
        assert_eq!(
            p.get(&["source", "address"]),
            Some(&b"203.0.113.7:0"[..]),
            "the address the connection manager took from x-forwarded-for, port 0"
        );
        assert_eq!(p.get(&["source", "port"]), Some(&0i64.to_le_bytes()[..]));
    }

    #[test]
    fn the_same_client_and_peer_is_shown_as_a_sidecar_shows_it() {
        let r = request(serde_json::json!({
            "source": {"ip": "10.0.0.1", "port": 40000}, "remoteIp": "10.0.0.1",
            "http": {"headers": {"x-forwarded-for": "1.1.1.1"}},
        }));
        assert_eq!(trusted_proxies(&r), 0);
        let s = StreamInput::from_request(&r);
        assert_eq!(
            s.properties.get(&["source", "address"]),
            Some(&b"10.0.0.1:40000"[..])
        );
        assert_eq!(s.properties.get(&["destination", "address"]), None);
        let xff: Vec<&str> = s
            .request_headers
            .iter()
            .filter(|(k, _)| k == "x-forwarded-for")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(xff, vec!["1.1.1.1"], "the request's header as is");
    }

    #[test]
    fn a_gateway_request_without_a_destination_shows_a_stand_in_local_address() {
        let r = request(serde_json::json!({
            "source": {"ip": "10.0.0.1"}, "remoteIp": "203.0.113.7", "http": {},
        }));
        let s = StreamInput::from_request(&r);
        assert_eq!(
            s.properties.get(&["destination", "address"]),
            Some(&b"192.0.2.1"[..])
        );
        assert_eq!(hidden_peer(&r), None);
    }

    #[test]
    fn peers_the_plugin_cannot_tell_from_envoys_own_address_are_named() {
        let case = |source: &str, destination: Option<&str>| {
            let mut j = serde_json::json!({
                "source": {"ip": source}, "remoteIp": "203.0.113.7", "http": {},
            });
            if let Some(d) = destination {
                j["destination"] = serde_json::json!({"ip": d});
            }
            hidden_peer(&request(j))
        };
        assert!(case("127.0.0.1", Some("10.0.0.5")).is_some(), "127.0.0.1");
        assert!(case("::1", None).is_some(), "::1");
        assert!(
            case("10.0.0.5", Some("10.0.0.5")).is_some(),
            "the destination itself"
        );
        assert!(
            case("10.0.0.1", Some("127.0.0.2")).is_some(),
            "a loopback destination"
        );
        assert_eq!(
            case("127.0.0.7", Some("127.0.0.2")),
            None,
            "the rest of 127/8"
        );
        assert_eq!(case("10.0.0.1", Some("10.0.0.5")), None);
    }

    #[test]
    fn a_struct_encodes_each_value_kind() {
        let m = serde_json::json!({"s": "x", "n": 1.5, "b": true, "l": ["a"], "o": {"k": null}});
        let bytes = protobuf_struct(m.as_object().unwrap());
        // `b`: entry(key "b", value bool true) — fields sorted by key.
        assert_eq!(
            bytes.get(..9).unwrap(),
            &[0x0a, 0x07, 0x0a, 0x01, b'b', 0x12, 0x02, 0x20, 0x01]
        );
    }

    proptest::proptest! {
        /// Addresses are written as `SocketAddr`'s `Display` writes them (Envoy's form).
        #[test]
        fn addresses_are_written_as_display_writes_them(
            octets in proptest::array::uniform4(0u8..),
            port in proptest::option::of(0u16..),
        ) {
            let ip = IpAddr::from(octets);
            let mut out = Vec::new();
            address(&mut out, ip, port);
            let want = match port {
                Some(p) => SocketAddr::new(ip, p).to_string(),
                None => ip.to_string(),
            };
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
