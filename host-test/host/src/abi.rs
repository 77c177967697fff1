//! The proxy-wasm ABI v0.2.1 numbers and the pairs serialization, as the spec defines them
//! (`proxy-wasm/spec`, `abi-versions/v0.2.1`).

/// `proxy_status_t`: what every host function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// The key, header, property or queue does not exist.
    NotFound = 1,
    /// An argument is out of range (an unknown map or buffer type, say).
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// Input could not be parsed.
    ParseFailure = 4,
    /// A pointer or length points outside guest memory.
    InvalidMemoryAccess = 6,
    /// The queue is empty.
    Empty = 7,
    /// The shared-data compare-and-swap value did not match.
    CasMismatch = 8,
    /// The host failed (the guest's allocator returned 0, say).
    InternalFailure = 10,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    /// The value returned to the guest.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_action_t`: what a stream callback asks of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue,
    /// Stop here (after a local reply, or to wait).
    Pause,
}

impl Action {
    /// Reads a callback's return value (anything but 0 pauses, as Envoy reads it).
    pub fn from_code(code: i32) -> Action {
        if code == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// `proxy_log_level_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0.
    Trace,
    /// 1.
    Debug,
    /// 2.
    Info,
    /// 3.
    Warn,
    /// 4.
    Error,
    /// 5.
    Critical,
}

impl LogLevel {
    /// The level of a guest-given number; `None` outside 0..=5.
    pub fn from_code(code: i32) -> Option<LogLevel> {
        Some(match code {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    /// The ABI number.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_buffer_type_t` values the host serves.
pub mod buffer {
    /// `HTTP_REQUEST_BODY`.
    pub const HTTP_REQUEST_BODY: i32 = 0;
    /// `HTTP_RESPONSE_BODY`.
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    /// `DOWNSTREAM_DATA`.
    pub const DOWNSTREAM_DATA: i32 = 2;
    /// `UPSTREAM_DATA`.
    pub const UPSTREAM_DATA: i32 = 3;
    /// `HTTP_CALL_RESPONSE_BODY`.
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    /// `GRPC_CALL_MESSAGE`.
    pub const GRPC_CALL_MESSAGE: i32 = 5;
    /// `VM_CONFIGURATION`.
    pub const VM_CONFIGURATION: i32 = 6;
    /// `PLUGIN_CONFIGURATION`.
    pub const PLUGIN_CONFIGURATION: i32 = 7;
    /// `FOREIGN_FUNCTION_ARGUMENTS`.
    pub const FOREIGN_FUNCTION_ARGUMENTS: i32 = 8;
}

/// `proxy_map_type_t` values.
pub mod map {
    /// `HTTP_REQUEST_HEADERS`.
    pub const HTTP_REQUEST_HEADERS: i32 = 0;
    /// `HTTP_REQUEST_TRAILERS`.
    pub const HTTP_REQUEST_TRAILERS: i32 = 1;
    /// `HTTP_RESPONSE_HEADERS`.
    pub const HTTP_RESPONSE_HEADERS: i32 = 2;
    /// `HTTP_RESPONSE_TRAILERS`.
    pub const HTTP_RESPONSE_TRAILERS: i32 = 3;
    /// `GRPC_CALL_INITIAL_METADATA`.
    pub const GRPC_CALL_INITIAL_METADATA: i32 = 4;
    /// `GRPC_CALL_TRAILING_METADATA`.
    pub const GRPC_CALL_TRAILING_METADATA: i32 = 5;
    /// `HTTP_CALL_RESPONSE_HEADERS`.
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    /// `HTTP_CALL_RESPONSE_TRAILERS`.
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_stream_type_t` values.
pub mod stream {
    /// `HTTP_REQUEST`.
    pub const HTTP_REQUEST: i32 = 0;
    /// `HTTP_RESPONSE`.
    pub const HTTP_RESPONSE: i32 = 1;
    /// `DOWNSTREAM`.
    pub const DOWNSTREAM: i32 = 2;
    /// `UPSTREAM`.
    pub const UPSTREAM: i32 = 3;
}

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only ever increases.
    Counter,
    /// Set or moved either way.
    Gauge,
    /// Records values (the host keeps the last and the count).
    Histogram,
}

impl MetricType {
    /// The type of a guest-given number.
    pub fn from_code(code: i32) -> Option<MetricType> {
        match code {
            0 => Some(MetricType::Counter),
            1 => Some(MetricType::Gauge),
            2 => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// `proxy_peer_type_t` `REMOTE`: the peer closed the connection.
pub const PEER_REMOTE: i32 = 2;

/// Serializes a map: a u32 count, count × (u32 key length, u32 value length), then each key
/// and value followed by a NUL; every number little-endian.
pub fn serialize_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    serialize_pairs_into(&mut out, pairs);
    out
}

/// [`serialize_pairs`], appended to `out` (a buffer the caller reuses).
pub fn serialize_pairs_into<K: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(K, V)]) {
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes();
    let size: usize = pairs
        .iter()
        .map(|(k, v)| k.as_ref().len().saturating_add(v.as_ref().len()))
        .sum();
    out.reserve(
        size.saturating_add(pairs.len().saturating_mul(10))
            .saturating_add(4),
    );
    out.extend(u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend(len(k.as_ref()));
        out.extend(len(v.as_ref()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
}

/// Reads a serialized map. An empty input or a single NUL byte is the empty map (the spec
/// lets a guest send either); anything malformed is `None`.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() || bytes == [0] {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::new();
    let mut at = 4usize;
    for _ in 0..count {
        sizes.push((u32_at(at)?, u32_at(at.checked_add(4)?)?));
        at = at.checked_add(8)?;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?.to_vec();
        at = at.checked_add(k)?;
        (bytes.get(at) == Some(&0)).then_some(())?;
        at = at.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?.to_vec();
        at = at.checked_add(v)?;
        (bytes.get(at) == Some(&0)).then_some(())?;
        at = at.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

/// Joins property path segments as the SDKs send them: NUL between segments, none at the end.
pub fn property_path(segments: &[&str]) -> Vec<u8> {
    segments.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn pairs_round_trip_and_match_the_spec_example() {
        let b = serialize_pairs(&[("a", "1"), ("b", "22")]);
        let want: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"a\x001\x00b\x0022\x00",
        ]
        .concat();
        assert_eq!(b, want);
        let back = deserialize_pairs(&b).unwrap();
        assert_eq!(back[1], (b"b".to_vec(), b"22".to_vec()));
    }

    #[test]
    fn an_empty_map_may_be_empty_or_one_nul_and_garbage_is_refused() {
        assert_eq!(deserialize_pairs(&[]), Some(Vec::new()));
        assert_eq!(deserialize_pairs(&[0]), Some(Vec::new()));
        assert_eq!(deserialize_pairs(&[5, 0, 0, 0]), None);
        let mut b = serialize_pairs(&[("k", "v")]);
        b.pop();
        assert_eq!(deserialize_pairs(&b), None, "a missing NUL");
    }

    #[test]
    fn a_property_path_joins_segments_with_nul() {
        assert_eq!(property_path(&["source", "address"]), b"source\0address");
        assert_eq!(property_path(&[]), b"");
    }
}
