//! The request the engine decides on, as hosts hand it over.
//!
//! This is also the JSON schema of `palisade eval --request` (documented in the README):
//! field names are camelCase, unknown fields are rejected, and every field but `destination`
//! may be left out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Which filter chain saw the traffic: an HTTP request, or a TCP connection (first byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// An HTTP request: every AuthorizationPolicy field applies.
    #[default]
    Http,
    /// A TCP connection: HTTP-only fields are handled as Istio does on TCP.
    Tcp,
}

/// The L4 transport, for NetworkPolicy `ports[].protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Transport {
    /// TCP (the default, as in Kubernetes).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A workload named in a request: either a reference into the inventory
/// (`namespace` + `name`), or described inline (`namespace`, `labels`, `serviceAccount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// The workload's namespace.
    pub namespace: String,
    /// The inventory name of the workload; when set, labels and service account come from
    /// the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Pod labels, when the workload is described inline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Service account, when the workload is described inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// One side of the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// The address of this side (for the source: the direct peer, Envoy's `source.address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The port of this side (for the destination: the workload's target port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Source only: the peer certificate's URI SAN, e.g.
    /// `spiffe://cluster.local/ns/shop/sa/frontend`. Absent for plaintext peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The workload on this side, when known. For the destination this selects the
    /// AuthorizationPolicies that apply; when absent it is looked up by `ip` in the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
}

/// An HTTP request's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAttributes {
    /// `:method`, e.g. `GET`.
    #[serde(default)]
    pub method: String,
    /// `:authority` (the Host header) exactly as sent, port included.
    #[serde(default)]
    pub host: String,
    /// `:path` exactly as sent: query included, not normalised (the engine normalises it
    /// with the configured mode).
    #[serde(default)]
    pub path: String,
    /// Request headers; names are matched case-insensitively, each value separately.
    /// A single string is accepted where a list is expected.
    #[serde(default, deserialize_with = "de_headers")]
    pub headers: BTreeMap<String, Vec<String>>,
}

/// A request to decide: a TCP connection or an HTTP request, with everything the
/// hosts know about it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// L4 transport for NetworkPolicy, `TCP` by default.
    #[serde(default)]
    pub transport: Transport,
    /// The caller.
    #[serde(default)]
    pub source: Endpoint,
    /// The callee: the workload whose policies decide.
    #[serde(default)]
    pub destination: Endpoint,
    /// The original client address (`remote.ip`, from trusted `x-forwarded-for` hops);
    /// defaults to `source.ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
    /// Whether the connection used mutual TLS; defaults to whether `source.principal` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<bool>,
    /// The TLS SNI (`connection.sni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// HTTP attributes; required for `protocol: http`, ignored for `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAttributes>,
    /// The verified JWT payload (`request.auth.*`), as `envoy.filters.http.jwt_authn`
    /// would store it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<serde_json::Value>,
    /// A raw bearer token, as sent in `Authorization: Bearer`, when `jwt` is absent: a host
    /// with a [`crate::authn::TokenVerifier`] (`palisade eval`) checks it against the
    /// destination's jwtRules as `jwt_authn` would; without one it cannot be trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_token: Option<String>,
    /// The answers of external authorizers, by provider name (`{"my-ext-authz": "allow"}`):
    /// what a CUSTOM policy's provider said. A provider a matching CUSTOM rule asks and that
    /// has no answer here leaves the decision `custom-pending`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ext_authz: BTreeMap<String, ExtAuthzAnswer>,
}

/// What an external authorizer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtAuthzAnswer {
    /// The authorizer allowed the request (HTTP 200, gRPC `OK`).
    Allow,
    /// The authorizer denied it (or failed, without `failOpen`).
    Deny,
}

impl Request {
    /// Whether the peer is authenticated with mutual TLS.
    pub fn is_mtls(&self) -> bool {
        self.mtls.unwrap_or(self.source.principal.is_some())
    }

    /// The original client address: `remoteIp`, else the direct peer.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source.ip)
    }
}

fn de_headers<'de, D>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let raw = BTreeMap::<String, OneOrMany>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let values = match v {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v,
            };
            (k.to_ascii_lowercase(), values)
        })
        .collect())
}
