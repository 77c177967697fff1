//! What the glue reads from Envoy: properties (one host call each, only those the rules
//! need), the node metadata, and the request headers.

use palisade_engine::Needs;
use proxy_wasm::types::MapType;

use super::abi::{self, status_name};
use crate::attributes::{
    AttributeError, RawAttributes, decode_bool, decode_labels, decode_string, has_port,
    kept_headers, paths, recorded_peer,
};
use crate::config::{NodeMetadata, Plugin};

/// A property's raw bytes (`path` NUL-joined, see [`paths`]); `None` when Envoy does not have
/// it. One host call and no allocation but the host's buffer, which becomes the `Vec`.
pub(super) fn property(path: &[u8]) -> Result<Option<Vec<u8>>, AttributeError> {
    abi::get_property(path).map_err(|s| {
        AttributeError(format!(
            "cannot read `{}`: {}",
            paths::name(path),
            status_name(s)
        ))
    })
}

pub(super) fn node_metadata() -> NodeMetadata {
    let string = |p: &[u8]| {
        property(p)
            .ok()
            .flatten()
            .and_then(|b| decode_string(&paths::name(p), &b).ok())
            .filter(|s| !s.is_empty())
    };
    NodeMetadata {
        namespace: string(paths::NODE_NAMESPACE),
        workload_name: string(paths::NODE_WORKLOAD_NAME),
        labels: property(paths::NODE_LABELS)
            .ok()
            .flatten()
            .and_then(|b| decode_labels(&b).ok())
            .unwrap_or_default(),
        service_account: string(paths::NODE_SERVICE_ACCOUNT),
    }
}

/// The connection attributes `needs` asks for (TCP and HTTP).
///
/// Each property read is a host call costing about 1 µs of Envoy CPU on V8 (measured with
/// `cargo xtask bench-envoy`), so only what the workload's rules can test is read (see
/// [`Needs`]); the rest stays absent, which decides the same. Within that, reads whose answer
/// cannot change the request are skipped too: `*.port` when `*.address` already carries the
/// port (`ip:port` on Envoy 1.40, and the same socket's port), and the peer URI SAN without
/// mTLS (`build_request` drops it then).
pub(super) fn connection_attributes(needs: &Needs) -> Result<RawAttributes, AttributeError> {
    let mut raw = RawAttributes::default();
    if needs.source_ip || needs.remote_ip {
        raw.source_address = property(paths::SOURCE_ADDRESS)?;
        raw.source_port = port_unless_in(raw.source_address.as_deref(), paths::SOURCE_PORT)?;
    }
    if needs.destination_ip || needs.destination_port {
        raw.destination_address = property(paths::DESTINATION_ADDRESS)?;
    }
    if needs.destination_port {
        raw.destination_port =
            port_unless_in(raw.destination_address.as_deref(), paths::DESTINATION_PORT)?;
    }
    if needs.principal {
        raw.mtls = property(paths::MTLS)?;
        let verified = raw
            .mtls
            .as_deref()
            .is_some_and(|b| matches!(decode_bool("connection.mtls", b), Ok(true)));
        if verified {
            raw.peer_uri_san = property(paths::PEER_URI_SAN)?;
        }
    }
    if needs.sni {
        raw.sni = property(paths::SNI)?;
    }
    Ok(raw)
}

/// The port property, read only when the address property has no port.
fn port_unless_in(address: Option<&[u8]>, port: &[u8]) -> Result<Option<Vec<u8>>, AttributeError> {
    if address.is_some_and(has_port) {
        Ok(None)
    } else {
        property(port)
    }
}

/// [`connection_attributes`], the header map when a rule tests a header, the method, the path
/// or the host (or, at a gateway, `source.ip` of a request whose `source.address` Envoy took
/// from `x-forwarded-for`) — keeping only the headers
/// [`Plugin::keeps_header`] names — and `metadata` when a rule tests the JWT.
pub(super) fn http_attributes(
    plugin: &Plugin,
    needs: &Needs,
) -> Result<RawAttributes, AttributeError> {
    let mut raw = connection_attributes(needs)?;
    // An address Envoy took from x-forwarded-for (port 0) leaves the direct peer to the
    // peer recorder, when one runs on the listener; else, at a gateway, to the header's last
    // entry, checked against the listener-side address (`attributes::client_addresses`).
    let from_xff = needs.source_ip
        && raw
            .source_address
            .as_deref()
            .is_some_and(|a| a.ends_with(b":0"));
    if from_xff {
        raw.recorded_peer = property(paths::RECORDED_PEER)?;
    }
    let derive_peer = from_xff
        && plugin.num_trusted_proxies.is_some_and(|n| n > 0)
        && raw
            .recorded_peer
            .as_deref()
            .and_then(recorded_peer)
            .is_none();
    if derive_peer && raw.destination_address.is_none() {
        raw.destination_address = property(paths::DESTINATION_ADDRESS)?;
    }
    if needs.headers || derive_peer {
        let map = abi::get_header_map_pairs(MapType::HttpRequestHeaders as u32).map_err(|s| {
            AttributeError(format!(
                "cannot read the request headers: {}",
                status_name(s)
            ))
        })?;
        raw.headers = Some(kept_headers(
            &map,
            |name| plugin.keeps_header(name),
            plugin.headers.len(),
        )?);
    }
    if needs.jwt {
        raw.metadata = property(paths::METADATA)?;
    }
    Ok(raw)
}
