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
    /// The connection's direct peer as the plugin's `peerRecorder` network filter stored it
    /// (`proxy_set_property`: Envoy keeps it as the connection's filter state
    /// `wasm.palisade_peer`, which every HTTP stream of the connection reads through its
    /// parent filter state). One segment: Envoy looks an unknown first segment up there.
    pub const RECORDED_PEER: &[u8] = b"palisade_peer";

    /// [`RECORDED_PEER`] as messages name it.
    pub const RECORDED_PEER_NAME: &str = "palisade_peer";

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
    /// The direct peer the `peerRecorder` network filter stored ([`paths::RECORDED_PEER`]),
    /// read only when `source.address` came from `x-forwarded-for` (HTTP only).
    pub recorded_peer: Option<Vec<u8>>,
}

/// The direct peer as the `peerRecorder` network filter stored it: `source.address` in a
/// network filter, which is the connection's peer (`ip:port`, port > 0). Anything else is not
/// what the recorder writes and is not taken for the peer (`None`: the request is then decided
/// as without a recorder).
pub fn recorded_peer(bytes: &[u8]) -> Option<(IpAddr, u16)> {
    match decode_address(paths::RECORDED_PEER_NAME, bytes) {
        Ok((ip, Some(port))) if port != 0 => Some((ip, port)),
        _ => None,
    }
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

/// The two client addresses Envoy's RBAC filter uses, as the plugin finds them:
/// `direct_remote_ip` (Istio `ipBlocks`, `notIpBlocks`, `source.ip`) and `remote_ip`
/// (`remoteIpBlocks`, `notRemoteIpBlocks`, `remote.ip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddresses {
    /// The direct peer, or why the plugin cannot know it on this request (the request is
    /// then decided by [`Plugin::decide_without_peer`]: the decision every peer would get, or
    /// a fail-closed error when a rule decides by the peer).
    pub direct: Result<IpAddr, String>,
    /// The trusted client address.
    pub remote: IpAddr,
}

/// The whitespace Envoy trims around an `x-forwarded-for` entry (`StringUtil::ltrim`/`rtrim`).
const XFF_WHITESPACE: &[char] = &[' ', '\t', '\u{c}', '\u{b}', '\n', '\r'];

/// The address Envoy 1.40 takes from `x-forwarded-for` after skipping `skip` entries from
/// the right (`Http::Utility::getLastAddressFromXFF`): cut at the last `,` `skip` times
/// (`None` when there are fewer commas), then the text after the last remaining `,` — unless
/// that `,` ends the text, then all of it (which holds a `,`, so it is no address) — trimmed,
/// read as a bare IPv4 or IPv6 address (no port, no brackets). Empty entries count.
pub fn envoy_xff_address(xff: &str, skip: u32) -> Option<IpAddr> {
    let mut s = xff;
    for _ in 0..skip {
        let comma = s.rfind(',')?;
        s = s.get(..comma)?;
    }
    if let Some(comma) = s.rfind(',')
        && comma.saturating_add(1) < s.len()
    {
        s = s.get(comma.saturating_add(1)..)?;
    }
    s.trim_matches(XFF_WHITESPACE).parse::<IpAddr>().ok()
}

/// Whether `ip` is an address Envoy treats as loopback when it appends the peer to
/// `x-forwarded-for` (`Network::Utility::isLoopbackAddress`: exactly `127.0.0.1` or `::1`,
/// not the rest of 127/8). For such a peer Envoy appends its own node address instead.
pub fn envoy_loopback(ip: IpAddr) -> bool {
    ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
}

/// The client addresses of a request on an HTTP listener, from what Envoy 1.40 shows an
/// HTTP filter (observed on Envoy 1.40 itself, `envoy/harness/tests/gateway_xff.rs`; the
/// reasoning is in `docs/envoy-gateway.md`):
///
/// - `source.address` is the stream's remote address: the address RBAC's `remote_ip` reads,
///   on every listener shape. It is the connection's peer (`ip:port`, port > 0), unless the
///   connection manager took it from `x-forwarded-for` — a sidecar (`use_remote_address:
///   false`) takes the rightmost entry when it is an address; a gateway (`use_remote_address:
///   true`, `xff_num_trusted_hops: N` > 0) the N-th from the right of the header as received —
///   and then its port is 0 (an address read from text has none; a TCP peer's port is never
///   0). So `remote` is `source.address`, always.
/// - The direct peer (`direct_remote_ip`) has no property of Envoy's in an HTTP filter. When
///   the port is not 0, `source.address` is the peer. When it is 0 and the peer recorder runs
///   on the listener, [`build`] takes the peer it recorded ([`recorded_peer`]) and does not
///   call this. Otherwise, when it is 0:
///   - at a gateway (`numTrustedProxies` N > 0), Envoy appended the peer to
///     `x-forwarded-for` after reading it, so the header the plugin sees (one value: Envoy
///     joins repeated lines) ends with `,<peer>`. Two checks first: the entry N+1 from the
///     right must be `source.address` (else the listener's N is not the configured one, or
///     this is no gateway), and the last entry must stand for the peer — Envoy writes its own
///     node address instead of a peer of exactly `127.0.0.1` or `::1`, and the plugin cannot
///     see that address; a peer of `127.0.0.1`/`::1` connects to a loopback destination, so
///     the entry is taken as the peer only when it is in 127/8 but not `127.0.0.1`, or when
///     the destination is not loopback and not the entry itself.
///   - on a sidecar (no `numTrustedProxies`, or 0), nothing the filter can read names the
///     peer: unknown. (No property names it: `source.*` and `connection.*` read the stream's
///     address provider, whose remote address the connection manager replaced.)
///
/// `destination` is the listener-side address (`destination.address`), `xff` the
/// `x-forwarded-for` values the plugin sees, `trusted` the configured `numTrustedProxies`.
pub fn client_addresses(
    source: IpAddr,
    source_port: Option<u16>,
    destination: Option<IpAddr>,
    xff: Option<&[String]>,
    trusted: Option<u32>,
) -> ClientAddresses {
    let direct = if source_port == Some(0) {
        gateway_peer(source, destination, xff, trusted)
    } else {
        Ok(source)
    };
    ClientAddresses {
        direct,
        remote: source,
    }
}

fn gateway_peer(
    source: IpAddr,
    destination: Option<IpAddr>,
    xff: Option<&[String]>,
    trusted: Option<u32>,
) -> Result<IpAddr, String> {
    let n = match trusted {
        Some(n) if n > 0 => n,
        _ => {
            return Err(format!(
                "the direct peer is unknown: Envoy took source.address {source} from \
                 x-forwarded-for (a sidecar listener, use_remote_address: false), and no \
                 property gives an HTTP filter the peer"
            ));
        }
    };
    let xff = match xff {
        Some([one]) => one.as_str(),
        Some([]) | None => {
            return Err(format!(
                "the direct peer is unknown: source.address {source} came from \
                 x-forwarded-for, but the request has none (is the listener a gateway with \
                 numTrustedProxies {n}?)"
            ));
        }
        Some(_) => {
            return Err(
                "the direct peer is unknown: x-forwarded-for has several values (Envoy joins \
                 them into one)"
                    .to_string(),
            );
        }
    };
    if envoy_xff_address(xff, n) != Some(source) {
        return Err(format!(
            "the direct peer is unknown: source.address {source} is not entry {} from the \
             right of x-forwarded-for `{xff}`, as on a gateway with numTrustedProxies {n} \
             (is the mesh's numTrustedProxies another value?)",
            n.saturating_add(1)
        ));
    }
    let last = xff
        .rsplit_once(',')
        .map(|(_, last)| last)
        .unwrap_or_default();
    let Ok(peer) = last.parse::<IpAddr>() else {
        return Err(format!(
            "the direct peer is unknown: the last x-forwarded-for entry `{last}` is not the \
             address Envoy appends"
        ));
    };
    let in_127 = matches!(peer, IpAddr::V4(v4) if v4.is_loopback());
    let loopback = |ip: IpAddr| ip.is_loopback();
    let certain = if envoy_loopback(peer) {
        false
    } else if in_127 {
        true
    } else {
        destination.is_some_and(|d| !loopback(d) && d != peer)
    };
    if certain {
        Ok(peer)
    } else {
        Err(format!(
            "the direct peer is unknown: the last x-forwarded-for entry {peer} may be Envoy's \
             own address, written for a peer of 127.0.0.1 or ::1 (the connection arrived at {})",
            destination.map_or_else(|| "an unknown address".to_string(), |d| d.to_string())
        ))
    }
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

/// A request as built from Envoy's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The engine request; `source.ip` is absent when the direct peer is unknown.
    pub request: Request,
    /// Why the direct peer is unknown, when it is (see [`client_addresses`]).
    pub unknown_peer: Option<String>,
}

impl Built {
    /// Decides it: with [`Plugin::decide_without_peer`] when the direct peer is unknown.
    pub fn decide(&self, plugin: &Plugin) -> palisade_engine::Decision {
        match &self.unknown_peer {
            Some(why) => plugin.decide_without_peer(&self.request, why),
            None => plugin.decide(&self.request),
        }
    }
}

/// [`build`], refusing a request whose direct peer is unknown when a rule tests it (for
/// callers that decide without [`Built::decide`]).
pub fn build_request(raw: RawAttributes, plugin: &Plugin) -> Result<Request, AttributeError> {
    let built = build(raw, plugin)?;
    match built.unknown_peer {
        Some(why) if plugin.needs.source_ip => Err(AttributeError(why)),
        _ => Ok(built.request),
    }
}

/// Builds the engine request: the local workload is the destination. The two client
/// addresses come from [`client_addresses`] (HTTP) or are both the connection's peer (TCP: a
/// network filter reads the connection, whose remote address is its peer).
pub fn build(raw: RawAttributes, plugin: &Plugin) -> Result<Built, AttributeError> {
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
    let http = match plugin.protocol {
        Protocol::Http => Some(http_attributes(raw.headers.unwrap_or_default())),
        Protocol::Tcp => None,
    };
    let recorded = raw.recorded_peer.as_deref().and_then(recorded_peer);
    let mut unknown_peer = None;
    let (peer, peer_port, remote_ip) = match (source_ip, &http) {
        (None, _) => (None, None, None),
        (Some(ip), None) => (Some(ip), source_port, Some(ip)),
        // Envoy took source.address from x-forwarded-for, and the recorder saw the peer.
        (Some(ip), Some(_)) if source_port == Some(0) && recorded.is_some() => {
            let (peer, port) = recorded.unzip();
            (peer, port, Some(ip))
        }
        (Some(ip), Some(h)) => {
            let xff = h.headers.get("x-forwarded-for").map(Vec::as_slice);
            let a = client_addresses(
                ip,
                source_port,
                destination_ip,
                xff,
                plugin.num_trusted_proxies,
            );
            match a.direct {
                // The port belongs to the peer only when source.address is the peer.
                Ok(peer) if peer == ip && source_port != Some(0) => {
                    (Some(peer), source_port, Some(a.remote))
                }
                Ok(peer) => (Some(peer), None, Some(a.remote)),
                Err(why) => {
                    unknown_peer = Some(why);
                    (None, None, Some(a.remote))
                }
            }
        }
    };
    let mut request = Request {
        protocol: plugin.protocol,
        source: Endpoint {
            ip: peer,
            port: peer_port,
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
            workload: (!plugin.engine.network().is_empty()).then(|| plugin.workload.clone()),
        },
        remote_ip,
        mtls: Some(mtls),
        sni,
        http,
        ..Request::default()
    };
    if request.http.is_some() {
        request.jwt = match &raw.metadata {
            Some(m) => jwt_payload(m)?,
            None => None,
        };
    }
    Ok(Built {
        request,
        unknown_peer,
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

    fn plugin(protocol: &str) -> Plugin {
        let json = serde_json::json!({
            "policy": "", "protocol": protocol,
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// What Envoy 1.40 shows an HTTP filter on a listener, for a request from `peer` (port
    /// 40000) to `destination` with `x-forwarded-for` values `xff` as sent: (`source.address`
    /// ip and port, the `x-forwarded-for` values the filter sees). `gateway` is the listener's
    /// `xff_num_trusted_hops` with `use_remote_address: true`; `None` is a sidecar. This is
    /// `ConnectionManagerUtility::mutateRequestHeaders` restated; the harness test
    /// `gateway_xff` checks it against the real Envoy.
    fn envoy_shows(
        peer: &str,
        xff: &[&str],
        gateway: Option<u32>,
        local: &str,
    ) -> (IpAddr, u16, Vec<String>) {
        let peer = ip(peer);
        // Envoy joins repeated lines of this header with ",".
        let received = (!xff.is_empty()).then(|| xff.join(","));
        match gateway {
            None => {
                let picked = received.as_deref().and_then(|x| envoy_xff_address(x, 0));
                let seen = received.into_iter().collect();
                match picked {
                    Some(c) => (c, 0, seen),
                    None => (peer, 40000, seen),
                }
            }
            Some(n) => {
                let picked = received
                    .as_deref()
                    .filter(|_| n > 0)
                    .and_then(|x| envoy_xff_address(x, n - 1));
                let appended = if envoy_loopback(peer) {
                    ip(local)
                } else {
                    peer
                };
                let seen = match received {
                    Some(x) if !x.is_empty() => format!("{x},{appended}"),
                    _ => appended.to_string(),
                };
                match picked {
                    Some(c) => (c, 0, vec![seen]),
                    None => (peer, 40000, vec![seen]),
                }
            }
        }
    }

    /// The plugin's two addresses for a request on a listener shape: (direct, remote).
    fn plugin_sees(
        peer: &str,
        xff: &[&str],
        gateway: Option<u32>,
        configured: Option<u32>,
        destination: &str,
    ) -> (Result<IpAddr, String>, IpAddr) {
        let (source, port, seen) = envoy_shows(peer, xff, gateway, "10.9.9.9");
        let headers = (!seen.is_empty()).then_some(seen);
        let a = client_addresses(
            source,
            Some(port),
            Some(ip(destination)),
            headers.as_deref(),
            configured,
        );
        (a.direct, a.remote)
    }

    #[test]
    fn envoys_xff_reading_skips_entries_from_the_right_and_keeps_its_quirks() {
        let cases: &[(&str, &str, u32, Option<&str>)] = &[
            ("one address", "203.0.113.5", 0, Some("203.0.113.5")),
            ("the rightmost", "1.1.1.1, 2.2.2.2", 0, Some("2.2.2.2")),
            ("skip one", "1.1.1.1, 2.2.2.2", 1, Some("1.1.1.1")),
            ("fewer entries than skipped", "1.1.1.1", 1, None),
            ("an empty header", "", 0, None),
            ("an empty entry counts", "1.1.1.1,,2.2.2.2", 1, None),
            ("whitespace is trimmed", " \t1.1.1.1 ", 0, Some("1.1.1.1")),
            ("a trailing comma reads the whole text", "1.1.1.1,", 0, None),
            (
                "an IPv6 entry",
                "1.1.1.1,2001:db8::1",
                0,
                Some("2001:db8::1"),
            ),
            (
                "IPv6 in brackets is not an address",
                "[2001:db8::1]",
                0,
                None,
            ),
            (
                "an address with a port is not an address",
                "1.1.1.1:80",
                0,
                None,
            ),
            ("a name is not an address", "client.example", 0, None),
        ];
        for (name, xff, skip, want) in cases {
            assert_eq!(
                envoy_xff_address(xff, *skip),
                want.map(ip),
                "{name}: `{xff}` skipping {skip}"
            );
        }
    }

    #[test]
    fn only_127_0_0_1_and_the_ipv6_loopback_are_loopback_to_envoy() {
        assert!(envoy_loopback(ip("127.0.0.1")));
        assert!(envoy_loopback(ip("::1")));
        assert!(
            !envoy_loopback(ip("127.0.0.7")),
            "the rest of 127/8 is appended as is"
        );
        assert!(!envoy_loopback(ip("10.0.0.1")));
    }

    #[test]
    fn sidecar_without_xff_both_addresses_are_the_peer() {
        let (direct, remote) = plugin_sees("127.0.0.7", &[], None, None, "127.0.0.2");
        assert_eq!((direct, remote), (Ok(ip("127.0.0.7")), ip("127.0.0.7")));
    }

    #[test]
    fn sidecar_with_xff_the_remote_address_is_the_rightmost_entry_and_the_peer_is_unknown() {
        let (direct, remote) = plugin_sees(
            "127.0.0.7",
            &["198.51.100.1, 203.0.113.5"],
            None,
            None,
            "127.0.0.2",
        );
        assert_eq!(remote, ip("203.0.113.5"));
        let why = direct.unwrap_err();
        assert!(why.contains("sidecar"), "{why}");
    }

    #[test]
    fn sidecar_with_an_xff_entry_that_is_no_address_both_are_the_peer() {
        for xff in [&["junk"][..], &[""], &["203.0.113.5,"], &["[2001:db8::1]"]] {
            let (direct, remote) = plugin_sees("127.0.0.7", xff, None, None, "127.0.0.2");
            assert_eq!(
                (direct, remote),
                (Ok(ip("127.0.0.7")), ip("127.0.0.7")),
                "{xff:?}"
            );
        }
    }

    #[test]
    fn gateway_with_no_trusted_proxy_ignores_a_spoofed_xff() {
        for configured in [None, Some(0)] {
            let (direct, remote) = plugin_sees(
                "127.0.0.9",
                &["127.0.0.7"],
                Some(0),
                configured,
                "127.0.0.2",
            );
            assert_eq!((direct, remote), (Ok(ip("127.0.0.9")), ip("127.0.0.9")));
        }
    }

    #[test]
    fn gateway_with_one_trusted_proxy_a_spoofed_allowed_address_is_only_the_remote_one() {
        // A banned peer claims an allowed address: ipBlocks see the peer, remoteIpBlocks the
        // claim.
        let (direct, remote) =
            plugin_sees("127.0.0.9", &["127.0.0.7"], Some(1), Some(1), "127.0.0.2");
        assert_eq!((direct, remote), (Ok(ip("127.0.0.9")), ip("127.0.0.7")));
    }

    #[test]
    fn gateway_with_one_trusted_proxy_takes_the_rightmost_entry_as_received() {
        let (direct, remote) = plugin_sees(
            "192.0.2.9",
            &["198.51.100.1, 203.0.113.5"],
            Some(1),
            Some(1),
            "10.0.0.5",
        );
        assert_eq!((direct, remote), (Ok(ip("192.0.2.9")), ip("203.0.113.5")));
    }

    #[test]
    fn gateway_with_two_trusted_proxies_takes_the_second_entry_from_the_right() {
        let (direct, remote) = plugin_sees(
            "192.0.2.9",
            &["198.51.100.1, 203.0.113.5, 10.0.0.2"],
            Some(2),
            Some(2),
            "10.0.0.5",
        );
        assert_eq!((direct, remote), (Ok(ip("192.0.2.9")), ip("203.0.113.5")));
    }

    #[test]
    fn gateway_with_several_header_lines_reads_them_joined() {
        let (direct, remote) = plugin_sees(
            "192.0.2.9",
            &["198.51.100.1", "203.0.113.5"],
            Some(2),
            Some(2),
            "10.0.0.5",
        );
        assert_eq!((direct, remote), (Ok(ip("192.0.2.9")), ip("198.51.100.1")));
    }

    #[test]
    fn gateway_with_fewer_entries_than_trusted_proxies_uses_the_peer_for_both() {
        let (direct, remote) =
            plugin_sees("192.0.2.9", &["203.0.113.5"], Some(2), Some(2), "10.0.0.5");
        assert_eq!((direct, remote), (Ok(ip("192.0.2.9")), ip("192.0.2.9")));
    }

    #[test]
    fn gateway_with_an_empty_xff_uses_the_peer_for_both() {
        let (direct, remote) = plugin_sees("192.0.2.9", &[""], Some(1), Some(1), "10.0.0.5");
        assert_eq!((direct, remote), (Ok(ip("192.0.2.9")), ip("192.0.2.9")));
    }

    #[test]
    fn gateway_with_ipv6_entries_and_peer() {
        let (direct, remote) = plugin_sees(
            "2001:db8:ffff::9",
            &["2001:db8::1, 203.0.113.5"],
            Some(2),
            Some(2),
            "2001:db8::5",
        );
        assert_eq!(
            (direct, remote),
            (Ok(ip("2001:db8:ffff::9")), ip("2001:db8::1"))
        );
    }

    #[test]
    fn a_configured_count_other_than_the_listeners_is_refused_not_guessed() {
        // The mesh trusts two proxies, the plugin was told one (and the reverse).
        for (listener, configured) in [(2, 1), (1, 2)] {
            let (direct, remote) = plugin_sees(
                "192.0.2.9",
                &["198.51.100.1, 203.0.113.5, 10.0.0.2"],
                Some(listener),
                Some(configured),
                "10.0.0.5",
            );
            let want = if listener == 2 {
                "203.0.113.5"
            } else {
                "10.0.0.2"
            };
            assert_eq!(
                remote,
                ip(want),
                "remote.ip is Envoy's, whatever the option"
            );
            let why = direct.unwrap_err();
            assert!(why.contains("numTrustedProxies"), "{why}");
        }
    }

    #[test]
    fn a_gateway_plugin_on_a_sidecar_does_not_take_a_spoofed_last_entry_as_the_peer() {
        // A sidecar took the rightmost entry; the plugin, wrongly told it is at a gateway,
        // must not read that same entry as the appended peer.
        let (direct, remote) = plugin_sees(
            "127.0.0.9",
            &["198.51.100.1, 127.0.0.7"],
            None,
            Some(1),
            "127.0.0.2",
        );
        assert_eq!(remote, ip("127.0.0.7"));
        assert!(direct.is_err(), "{direct:?}");
    }

    #[test]
    fn a_peer_of_127_0_0_1_replaced_by_envoys_address_is_not_taken_for_the_peer() {
        // Envoy appends its node address (10.9.9.9 here) for a peer of exactly 127.0.0.1.
        for destination in ["127.0.0.1", "10.9.9.9"] {
            let (direct, remote) =
                plugin_sees("127.0.0.1", &["203.0.113.5"], Some(1), Some(1), destination);
            assert_eq!(remote, ip("203.0.113.5"));
            let why = direct.unwrap_err();
            assert!(why.contains("127.0.0.1 or ::1"), "{destination}: {why}");
        }
        // The rest of 127/8 is appended as itself.
        let (direct, _) = plugin_sees("127.0.0.7", &["203.0.113.5"], Some(1), Some(1), "127.0.0.1");
        assert_eq!(direct, Ok(ip("127.0.0.7")));
    }

    #[test]
    fn several_xff_values_seen_by_the_filter_are_refused() {
        let values = vec!["203.0.113.5".to_string(), "192.0.2.9".to_string()];
        let a = client_addresses(
            ip("203.0.113.5"),
            Some(0),
            Some(ip("10.0.0.5")),
            Some(&values),
            Some(1),
        );
        assert!(a.direct.unwrap_err().contains("several values"));
    }

    fn ip_policy(action: &str, field: &str, cidr: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: p, namespace: shop}}\nspec:\n  action: {action}\n  rules:\n  \
             - from: [{{source: {{{field}: [\"{cidr}\"]}}}}]\n"
        )
    }

    fn http_plugin(policy: &str, extra: serde_json::Value) -> Plugin {
        let mut json = serde_json::json!({
            "policy": policy,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
        });
        if let (Some(j), Some(e)) = (json.as_object_mut(), extra.as_object()) {
            j.extend(e.clone());
        }
        Plugin::configure(
            &crate::config::test_configuration(json),
            &NodeMetadata::default(),
        )
        .unwrap()
    }

    /// A request as Envoy shows it on a listener shape, built by the plugin.
    fn request_on(
        p: &Plugin,
        peer: &str,
        xff: &[&str],
        gateway: Option<u32>,
    ) -> Result<Request, AttributeError> {
        let (source, port, seen) = envoy_shows(peer, xff, gateway, "10.9.9.9");
        let mut raw = plaintext_conn();
        raw.source_address = Some(SocketAddr::new(source, port).to_string().into_bytes());
        raw.destination_address = Some(b"10.0.0.5:8080".to_vec());
        let mut headers: Vec<(HeaderName, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/".into()),
        ];
        headers.extend(
            seen.into_iter()
                .filter(|_| p.keeps_header("x-forwarded-for"))
                .map(|v| (HeaderName::from("x-forwarded-for"), v)),
        );
        raw.headers = Some(headers);
        build_request(raw, p)
    }

    #[test]
    fn at_a_gateway_ip_blocks_decide_on_the_peer_not_on_a_spoofed_xff() {
        let allow = http_plugin(
            &ip_policy("ALLOW", "ipBlocks", "192.0.2.7/32"),
            serde_json::json!({"numTrustedProxies": 1}),
        );
        let deny = http_plugin(
            &ip_policy("DENY", "ipBlocks", "192.0.2.9/32"),
            serde_json::json!({"numTrustedProxies": 1}),
        );
        let decide = |p: &Plugin, peer: &str, xff: &[&str]| {
            p.decide(&request_on(p, peer, xff, Some(1)).unwrap())
                .allowed()
        };
        assert!(
            !decide(&allow, "192.0.2.9", &["192.0.2.7"]),
            "spoofing the allowed address"
        );
        assert!(
            decide(&allow, "192.0.2.7", &["203.0.113.5"]),
            "the allowed peer"
        );
        assert!(
            !decide(&deny, "192.0.2.9", &["192.0.2.7"]),
            "a banned peer naming another"
        );
        assert!(
            decide(&deny, "192.0.2.7", &["192.0.2.9"]),
            "naming the banned address"
        );
    }

    /// [`request_on`] with the peer recorder on the listener: the glue reads what it stored
    /// (`peer:port`, as a network filter's `source.address`) only when Envoy took
    /// `source.address` from `x-forwarded-for` (port 0).
    fn request_with_recorder(
        p: &Plugin,
        peer: &str,
        xff: &[&str],
        gateway: Option<u32>,
    ) -> Result<Built, AttributeError> {
        let (source, port, seen) = envoy_shows(peer, xff, gateway, "10.9.9.9");
        let mut raw = plaintext_conn();
        raw.source_address = Some(SocketAddr::new(source, port).to_string().into_bytes());
        raw.destination_address = Some(b"10.0.0.5:8080".to_vec());
        if port == 0 {
            raw.recorded_peer = Some(SocketAddr::new(ip(peer), 41000).to_string().into_bytes());
        }
        let mut headers: Vec<(HeaderName, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/".into()),
        ];
        headers.extend(
            seen.into_iter()
                .filter(|_| p.keeps_header("x-forwarded-for"))
                .map(|v| (HeaderName::from("x-forwarded-for"), v)),
        );
        raw.headers = Some(headers);
        build(raw, p)
    }

    #[test]
    fn a_recorded_peer_is_only_what_the_recorder_writes() {
        type Case = (&'static str, &'static str, Option<(&'static str, u16)>);
        let cases: &[Case] = &[
            (
                "an IPv4 peer",
                "127.0.0.9:41000",
                Some(("127.0.0.9", 41000)),
            ),
            ("an IPv6 peer", "[::1]:41000", Some(("::1", 41000))),
            ("port 0 is no connection's peer", "203.0.113.5:0", None),
            ("an address without a port", "203.0.113.5", None),
            ("a bracketed address without a port", "[2001:db8::1]", None),
            ("not an address", "gateway", None),
            ("empty", "", None),
        ];
        for (name, bytes, want) in cases {
            let want = want.map(|(a, p)| (ip(a), p));
            assert_eq!(recorded_peer(bytes.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn with_the_recorder_every_shape_knows_the_peer_and_the_client() {
        let p = http_plugin(
            &ip_policy("DENY", "ipBlocks", "127.0.0.9/32"),
            serde_json::json!({}),
        );
        let gateway = |n: u32| {
            http_plugin(
                &ip_policy("DENY", "ipBlocks", "127.0.0.9/32"),
                serde_json::json!({"numTrustedProxies": n}),
            )
        };
        // (name, plugin, shape, peer, xff, the client RBAC's remote_ip reads)
        let g1 = gateway(1);
        let g2 = gateway(2);
        type Case<'a> = (
            &'a str,
            &'a Plugin,
            Option<u32>,
            &'a str,
            &'a [&'a str],
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                "sidecar, spoofed allowed address",
                &p,
                None,
                "127.0.0.9",
                &["127.0.0.7"],
                "127.0.0.7",
            ),
            (
                "sidecar, several entries",
                &p,
                None,
                "127.0.0.8",
                &["127.0.0.9, 203.0.113.5"],
                "203.0.113.5",
            ),
            (
                "sidecar, IPv6 entry and peer",
                &p,
                None,
                "::1",
                &["2001:db8::1"],
                "2001:db8::1",
            ),
            (
                "sidecar, peer 127.0.0.1",
                &p,
                None,
                "127.0.0.1",
                &["198.51.100.7"],
                "198.51.100.7",
            ),
            (
                "gateway 1, peer 127.0.0.1",
                &g1,
                Some(1),
                "127.0.0.1",
                &["203.0.113.5"],
                "203.0.113.5",
            ),
            (
                "gateway 1, peer ::1",
                &g1,
                Some(1),
                "::1",
                &["203.0.113.5"],
                "203.0.113.5",
            ),
            (
                "gateway 2, banned peer",
                &g2,
                Some(2),
                "127.0.0.9",
                &["203.0.113.5, 127.0.0.7"],
                "203.0.113.5",
            ),
            (
                "gateway 1, no header",
                &g1,
                Some(1),
                "127.0.0.9",
                &[],
                "127.0.0.9",
            ),
        ];
        for (name, plugin, shape, peer, xff, client) in cases {
            let built = request_with_recorder(plugin, peer, xff, *shape).unwrap();
            assert_eq!(built.unknown_peer, None, "{name}");
            assert_eq!(built.request.source.ip, Some(ip(peer)), "{name}");
            assert_eq!(built.request.remote_ip, Some(ip(client)), "{name}");
            let banned = *peer == "127.0.0.9";
            assert_eq!(built.decide(plugin).allowed(), !banned, "{name}");
        }
    }

    #[test]
    fn a_recorded_peer_is_not_read_when_source_address_is_the_peer_and_bad_ones_are_ignored() {
        let p = http_plugin(
            &ip_policy("DENY", "ipBlocks", "127.0.0.9/32"),
            serde_json::json!({}),
        );
        let mut raw = plaintext_conn();
        raw.headers = Some(vec![(":method".into(), "GET".into())]);
        // source.address has a port: it is the peer, whatever a recorded value says.
        raw.recorded_peer = Some(b"127.0.0.9:1".to_vec());
        let built = build(raw.clone(), &p).unwrap();
        assert_eq!(built.request.source.ip, Some(ip("127.0.0.7")));
        // Taken from x-forwarded-for on a sidecar, with a value the recorder never writes:
        // unknown, as without a recorder.
        raw.source_address = Some(b"203.0.113.5:0".to_vec());
        for bad in [&b"203.0.113.5:0"[..], b"127.0.0.9", b"nonsense"] {
            raw.recorded_peer = Some(bad.to_vec());
            let built = build(raw.clone(), &p).unwrap();
            assert_eq!(built.request.source.ip, None, "{bad:?}");
            assert!(built.unknown_peer.is_some(), "{bad:?}");
            assert_eq!(
                built.decide(&p).step,
                palisade_engine::Step::Error,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn at_a_gateway_remote_ip_blocks_decide_on_the_trusted_entry() {
        let allow = http_plugin(
            &ip_policy("ALLOW", "remoteIpBlocks", "203.0.113.0/24"),
            serde_json::json!({"numTrustedProxies": 1}),
        );
        let decide = |xff: &[&str], gateway: u32| {
            allow
                .decide(&request_on(&allow, "192.0.2.9", xff, Some(gateway)).unwrap())
                .allowed()
        };
        assert!(decide(&["198.51.100.1, 203.0.113.5"], 1));
        assert!(!decide(&["203.0.113.5, 198.51.100.1"], 1));
        assert!(!decide(&[], 1), "no header: the peer");
        // remoteIpBlocks never need the option: with N = 2 on the listener the plugin reads
        // Envoy's pick although it was told 1.
        assert!(decide(&["203.0.113.5, 198.51.100.1"], 2));
    }

    #[test]
    fn on_a_sidecar_an_xff_derived_request_fails_closed_only_when_ip_blocks_are_tested() {
        let ip_blocks = http_plugin(
            &ip_policy("ALLOW", "ipBlocks", "10.0.0.0/8"),
            serde_json::json!({}),
        );
        let e = request_on(&ip_blocks, "10.0.0.7", &["203.0.113.5"], None).unwrap_err();
        assert!(e.0.contains("direct peer is unknown"), "{e}");
        let ok = request_on(&ip_blocks, "10.0.0.7", &[], None).unwrap();
        assert!(
            ip_blocks.decide(&ok).allowed(),
            "without x-forwarded-for the peer is known"
        );
        let remote = http_plugin(
            &ip_policy("ALLOW", "remoteIpBlocks", "203.0.113.0/24"),
            serde_json::json!({}),
        );
        let r = request_on(&remote, "10.0.0.7", &["203.0.113.5"], None).unwrap();
        assert_eq!(r.source.ip, None, "not needed, not guessed");
        assert_eq!(r.remote_ip, Some(ip("203.0.113.5")));
        assert!(remote.decide(&r).allowed());
    }

    fn built_on(p: &Plugin, peer: &str, xff: &[&str], gateway: Option<u32>, path: &str) -> Built {
        let (source, port, seen) = envoy_shows(peer, xff, gateway, "10.9.9.9");
        let mut raw = plaintext_conn();
        raw.source_address = Some(SocketAddr::new(source, port).to_string().into_bytes());
        raw.destination_address = Some(b"10.0.0.5:8080".to_vec());
        let mut headers: Vec<(HeaderName, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), path.to_string()),
        ];
        headers.extend(
            seen.into_iter()
                .filter(|_| p.keeps_header("x-forwarded-for"))
                .map(|v| (HeaderName::from("x-forwarded-for"), v)),
        );
        raw.headers = Some(headers);
        build(raw, p).unwrap()
    }

    #[test]
    fn an_unknown_peer_decides_only_where_no_peer_could_change_the_decision() {
        use palisade_engine::{Step, Verdict};
        let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {name: admin-from-office, namespace: shop}\nspec:\n  action: ALLOW\n  \
             rules:\n  - from: [{source: {ipBlocks: [\"10.0.0.0/8\"]}}]\n    \
             to: [{operation: {paths: [\"/admin\"]}}]\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {name: banned-clients, namespace: shop}\nspec:\n  action: DENY\n  \
             rules:\n  - from: [{source: {remoteIpBlocks: [\"198.51.100.0/24\"]}}]\n";
        let p = http_plugin(policy, serde_json::json!({}));
        // A sidecar that took the client from x-forwarded-for: the peer is unknown.
        let case = |xff: &str, path: &str| {
            let b = built_on(&p, "10.0.0.7", &[xff], None, path);
            assert!(b.unknown_peer.is_some());
            assert_eq!(b.request.source.ip, None);
            let d = b.decide(&p);
            (d.verdict, d.step)
        };
        assert_eq!(
            case("198.51.100.7", "/admin"),
            (Verdict::Deny, Step::DenyMatched),
            "a banned client is denied whatever the peer"
        );
        assert_eq!(
            case("203.0.113.5", "/public"),
            (Verdict::Deny, Step::NoAllowMatched),
            "no peer makes /public allowed"
        );
        assert_eq!(
            case("203.0.113.5", "/admin").1,
            Step::Error,
            "whether /admin is allowed depends on the peer: fail closed"
        );
        // With the peer known (no x-forwarded-for), it decides.
        let known = built_on(&p, "10.0.0.7", &[], None, "/admin");
        assert_eq!(known.unknown_peer, None);
        assert!(known.decide(&p).allowed());
    }

    #[test]
    fn with_network_policies_an_unknown_peer_is_one_of_the_pods_its_certificate_names() {
        use palisade_engine::{Step, Verdict};
        // The worker may only reach the database (egress); the cart is not isolated.
        let policy = "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {name: i}\n\
             spec:\n  namespaces: [{name: shop}]\n  workloads:\n  \
             - {name: frontend, namespace: shop, serviceAccount: frontend, labels: {app: frontend}, ips: [10.1.0.10]}\n  \
             - {name: worker, namespace: shop, serviceAccount: worker, labels: {app: worker}, ips: [10.1.0.20]}\n  \
             - {name: cart, namespace: shop, serviceAccount: cart, labels: {app: cart}, ips: [10.1.0.30]}\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: worker-egress, namespace: shop}\n\
             spec: {podSelector: {matchLabels: {app: worker}}, policyTypes: [Egress], egress: [{ports: [{port: 5432}]}]}\n";
        let p = http_plugin(policy, serde_json::json!({}));
        assert_eq!(
            p.inventory_peers(Some("spiffe://cluster.local/ns/shop/sa/frontend")),
            vec![ip("10.1.0.10")]
        );
        assert!(
            p.inventory_peers(Some("spiffe://other.domain/ns/shop/sa/frontend"))
                .is_empty()
        );
        assert!(p.inventory_peers(None).is_empty());
        let decide = |principal: Option<&str>| {
            let mut b = built_on(&p, "10.1.0.10", &["203.0.113.5"], None, "/");
            assert!(b.unknown_peer.is_some(), "a sidecar with x-forwarded-for");
            b.request.source.principal = principal.map(str::to_string);
            let d = b.decide(&p);
            (d.verdict, d.step)
        };
        assert_eq!(
            decide(Some("spiffe://cluster.local/ns/shop/sa/frontend")).0,
            Verdict::Allow,
            "the frontend's pods may reach the cart"
        );
        assert_eq!(
            decide(Some("spiffe://cluster.local/ns/shop/sa/worker")).0,
            Verdict::Deny,
            "the worker's egress forbids it, whichever of its pods it is"
        );
        assert_eq!(
            decide(None).1,
            Step::Error,
            "plaintext: the peer could be any pod"
        );
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
            &plugin("tcp"),
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
        ]);
        let r = build_request(raw, &plugin("http")).unwrap();
        assert_eq!(r.source.principal, None);
        assert_eq!(r.mtls, Some(false));
        assert_eq!(r.sni, None, "empty SNI is no SNI");
        assert_eq!(r.source.port, Some(40000), "port from the address");
        assert_eq!(r.source.ip, Some("127.0.0.7".parse().unwrap()));
        assert_eq!(r.remote_ip, r.source.ip, "source.address is both");
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
        let e = build_request(raw, &plugin("tcp")).unwrap_err();
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
