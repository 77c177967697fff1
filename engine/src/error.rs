//! What goes wrong on the decision path, by name, as cedar's `authorizer/err.rs` names its
//! evaluation errors: a request whose destination cannot be found, a NetworkPolicy endpoint
//! that cannot be resolved, an OCI state or `config.json` that cannot be read. Hosts fail
//! closed on every one. Each error's message is the text the engine gave before these types
//! existed, and a [`DecisionError`] serialises as that text, so decisions read the same in JSON.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Envoy's wording for a token whose audiences the provider does not allow.
pub const AUDIENCE_NOT_ALLOWED: &str = "Audiences in Jwt are not allowed";

/// The status `jwt_authn` answers a refusal with: 403 for audiences it does not allow, 401
/// for everything else (Envoy's `Filter::onComplete`).
pub fn rejection_status(reason: &str) -> u32 {
    if reason == AUDIENCE_NOT_ALLOWED {
        403
    } else {
        401
    }
}

/// Why a request was not decided by its rules (`Decision::errors`): `jwt_authn` refused its
/// token ([`Step::JwtRejected`](crate::Step::JwtRejected)), or it could not be evaluated and
/// is denied ([`Step::Error`](crate::Step::Error)).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecisionError {
    /// `jwt_authn` refused the token; the reason as Envoy words it.
    #[error("{0}")]
    JwtRejected(&'static str),
    /// A raw token that cannot be checked here (no verifier, or no inline `jwks`).
    #[error("{0}")]
    UnverifiableToken(String),
    /// The request names a destination workload the inventory does not hold.
    #[error("workload `{namespace}/{name}` is not in the inventory")]
    UnknownWorkload {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The destination address is a node's (a node, or a `hostNetwork` pod), not a pod's.
    #[error(
        "the address `{ip}` is node `{node}`'s (a node or a hostNetwork pod), not a pod's: name the workload"
    )]
    NodeAddress {
        /// The address.
        ip: IpAddr,
        /// The node that holds it.
        node: String,
    },
    /// Two live workloads claim the destination address.
    #[error(
        "the address `{ip}` is held by both {first} and {second}: which one it is cannot be known; mark the stale one finished (`phase`) or remove it from the inventory"
    )]
    AmbiguousAddress {
        /// The address.
        ip: IpAddr,
        /// One workload, `` `ns/name` ``.
        first: String,
        /// The other.
        second: String,
    },
    /// No inventory workload has the destination address.
    #[error("no workload in the inventory has address `{ip}`")]
    NoWorkloadForAddress {
        /// The address.
        ip: IpAddr,
    },
    /// The request names neither a destination workload nor an address.
    #[error("the request names no destination workload or address")]
    NoDestination,
    /// The compiled engine has no view for an inventory workload (a damaged bundle).
    #[error("inventory view missing")]
    ViewMissing,
    /// NetworkPolicy could not resolve an end of the connection.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// An error read back from a decision's JSON (another host's), known by its text only.
    #[error("{0}")]
    Reported(String),
}

impl DecisionError {
    /// The text a variant holds as it is (a `jwt_authn` reason, a token's or another host's
    /// message), for hosts that answer with it without formatting; `None` for the others.
    pub fn text(&self) -> Option<&str> {
        match self {
            DecisionError::JwtRejected(s) => Some(s),
            DecisionError::UnverifiableToken(s) | DecisionError::Reported(s) => Some(s),
            _ => None,
        }
    }

    /// A stable name for what went wrong (also the miette code).
    pub fn code(&self) -> &'static str {
        match self {
            DecisionError::JwtRejected(_) => "palisade::jwt_rejected",
            DecisionError::UnverifiableToken(_) => "palisade::unverifiable_token",
            DecisionError::UnknownWorkload { .. } => "palisade::unknown_workload",
            DecisionError::NodeAddress { .. } => "palisade::node_address",
            DecisionError::AmbiguousAddress { .. } => "palisade::ambiguous_address",
            DecisionError::NoWorkloadForAddress { .. } => "palisade::no_workload_for_address",
            DecisionError::NoDestination => "palisade::no_destination",
            DecisionError::ViewMissing => "palisade::view_missing",
            DecisionError::Network(e) => e.code(),
            DecisionError::Reported(_) => "palisade::reported",
        }
    }
}

impl miette::Diagnostic for DecisionError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(DecisionError::code(self)))
    }
}

/// Two errors are the same when they say the same: a decision read back from JSON (its
/// errors [`DecisionError::Reported`]) equals the one it was written from.
impl PartialEq for DecisionError {
    fn eq(&self, other: &Self) -> bool {
        says(self, &other.to_string())
    }
}

impl Eq for DecisionError {}

impl PartialEq<str> for DecisionError {
    fn eq(&self, other: &str) -> bool {
        says(self, other)
    }
}

impl PartialEq<&str> for DecisionError {
    fn eq(&self, other: &&str) -> bool {
        says(self, other)
    }
}

impl PartialEq<String> for DecisionError {
    fn eq(&self, other: &String) -> bool {
        says(self, other)
    }
}

/// Whether `e`'s message is `text`, compared piece by piece as it is written.
fn says(e: &impl fmt::Display, text: &str) -> bool {
    struct Rest<'a>(&'a str);
    impl fmt::Write for Rest<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Rest(text);
    fmt::write(&mut rest, format_args!("{e}")).is_ok() && rest.0.is_empty()
}

impl From<DecisionError> for String {
    fn from(e: DecisionError) -> String {
        e.to_string()
    }
}

impl From<String> for DecisionError {
    fn from(s: String) -> DecisionError {
        DecisionError::Reported(s)
    }
}

impl From<&str> for DecisionError {
    fn from(s: &str) -> DecisionError {
        DecisionError::Reported(s.to_string())
    }
}

impl Serialize for DecisionError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DecisionError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DecisionError::Reported)
    }
}

/// Which end of a connection NetworkPolicy could not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Source,
    /// The server.
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Why NetworkPolicy could not evaluate a connection (denied, fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The request names a workload the inventory does not hold.
    #[error("{side} workload `{namespace}/{name}` is not in the inventory")]
    UnknownWorkload {
        /// Which end.
        side: Side,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Two live workloads claim the address.
    #[error(
        "the {side} address `{ip}` is held by both {first} and {second}: which one sent it cannot be known; mark the stale one finished (`phase`) or remove it from the inventory"
    )]
    AmbiguousAddress {
        /// Which end.
        side: Side,
        /// The address.
        ip: IpAddr,
        /// One workload, `` `ns/name` ``.
        first: String,
        /// The other.
        second: String,
    },
    /// Several inventory workloads run as the SPIFFE identity the request gives.
    #[error(
        "the {side} identity `{namespace}/{service_account}` is shared by several inventory workloads; give its workload or address"
    )]
    SharedIdentity {
        /// Which end.
        side: Side,
        /// The identity's namespace.
        namespace: String,
        /// Its service account.
        service_account: String,
    },
    /// No inventory workload runs as the SPIFFE identity the request gives.
    #[error("no inventory workload runs as the {side} identity `{namespace}/{service_account}`")]
    UnknownIdentity {
        /// Which end.
        side: Side,
        /// The identity's namespace.
        namespace: String,
        /// Its service account.
        service_account: String,
    },
    /// The request gives neither workload, address nor identity for an end.
    #[error(
        "NetworkPolicy needs the {side} workload, address or SPIFFE identity, and the request gives none"
    )]
    NoEndpoint {
        /// Which end.
        side: Side,
    },
    /// An inventory index the compiled policies point at does not exist (a damaged bundle).
    #[error("inventory workload missing")]
    WorkloadMissing,
    /// The compiled selections do not cover the inventory (a bundle compiled for another).
    #[error("the compiled NetworkPolicies do not match the inventory (recompile the bundle)")]
    StaleBundle,
}

impl NetworkError {
    /// A stable name for what went wrong (also the miette code).
    pub fn code(&self) -> &'static str {
        match self {
            NetworkError::UnknownWorkload { .. } => "palisade::network::unknown_workload",
            NetworkError::AmbiguousAddress { .. } => "palisade::network::ambiguous_address",
            NetworkError::SharedIdentity { .. } => "palisade::network::shared_identity",
            NetworkError::UnknownIdentity { .. } => "palisade::network::unknown_identity",
            NetworkError::NoEndpoint { .. } => "palisade::network::no_endpoint",
            NetworkError::WorkloadMissing => "palisade::network::workload_missing",
            NetworkError::StaleBundle => "palisade::network::stale_bundle",
        }
    }
}

impl miette::Diagnostic for NetworkError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(NetworkError::code(self)))
    }
}

/// Why a container start could not be read or decided (`Engine::decide_container`); hosts
/// deny then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// The OCI state is not the JSON the runtime spec describes.
    #[error("invalid OCI state: {0}")]
    BadState(String),
    /// The OCI state names no container.
    #[error("invalid OCI state: `id` is empty")]
    EmptyId,
    /// `config.json` cannot be read, or runtimes could read it differently.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A labels annotation is not a JSON object of strings.
    #[error("annotation `{key}` is not a JSON object of string labels: {reason}")]
    BadLabels {
        /// The annotation.
        key: String,
        /// What the JSON reader said.
        reason: String,
    },
}

impl ContainerError {
    /// A stable name for what went wrong (also the miette code).
    pub fn code(&self) -> &'static str {
        match self {
            ContainerError::BadState(_) => "palisade::container::bad_state",
            ContainerError::EmptyId => "palisade::container::empty_id",
            ContainerError::Config(e) => e.code(),
            ContainerError::BadLabels { .. } => "palisade::container::bad_labels",
        }
    }
}

impl miette::Diagnostic for ContainerError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(ContainerError::code(self)))
    }
}

impl From<ContainerError> for String {
    fn from(e: ContainerError) -> String {
        e.to_string()
    }
}

/// Why `config.json` is refused ([`crate::container::read`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The bytes hold no complete JSON document.
    #[error("invalid config.json: no JSON document")]
    NoDocument,
    /// The document is not JSON, or not a runtime-spec `config.json`.
    #[error("invalid config.json: {0}")]
    Invalid(String),
    /// The document is not UTF-8.
    #[error("config.json is not UTF-8: {0}")]
    NotUtf8(String),
    /// Runtimes could read the document differently (case-folded or duplicate keys,
    /// a namespace listed twice): the problems found, joined.
    #[error("config.json refused: runtimes could read it differently: {0}")]
    Ambiguous(String),
}

impl ConfigError {
    /// A stable name for what went wrong (also the miette code).
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::NoDocument => "palisade::config::no_document",
            ConfigError::Invalid(_) => "palisade::config::invalid",
            ConfigError::NotUtf8(_) => "palisade::config::not_utf8",
            ConfigError::Ambiguous(_) => "palisade::config::ambiguous",
        }
    }
}

impl miette::Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(ConfigError::code(self)))
    }
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}
