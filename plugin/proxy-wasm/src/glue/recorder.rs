//! The peer recorder (`"role": "peerRecorder"`). It runs in the TCP context type
//! ([`super::tcp::Tcp::recorder`]): a context type of its own would cost the module ~5 KB of
//! the SDK's provided trait methods compiled again for it.

use super::abi::{self, status_name};
use super::log;
use super::read::property;
use crate::attributes::paths;
use crate::enforce::Level;

/// On each new connection of an HTTP listener, as the `peerRecorder` network filter: stores
/// the connection's direct peer (`source.address` in a network filter, which reads the
/// connection itself) in the connection's filter state, where the HTTP filter finds it for
/// every request of the connection (see [`paths::RECORDED_PEER`]). The value is Envoy's, per
/// connection: a client has no way to write it, and it dies with the connection.
pub(super) fn record_peer() {
    let failed = match property(paths::SOURCE_ADDRESS) {
        Ok(Some(peer)) => match abi::set_property(paths::RECORDED_PEER, &peer) {
            0 => None,
            s => Some(format!("cannot store it: {}", status_name(s))),
        },
        Ok(None) => Some("source.address is absent".to_string()),
        Err(e) => Some(e.0),
    };
    // The HTTP filter then decides as without a recorder (fail closed where it must).
    if let Some(why) = failed {
        log(
            Level::Warn,
            &format!("palisade: peerRecorder: the direct peer is not recorded: {why}"),
        );
    }
}
