//! The engine side of the comparison: `palisade-engine` configured like the golden files'
//! proxy (workload in namespace `foo` with labels `app=httpbin, version=v1`, root namespace
//! `istio-system`, the case's trust domain and aliases, `BASE` path normalisation).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use palisade_engine::{
    Endpoint, HttpAttributes, Options, PathNormalization, Protocol, Request, SourceFile,
    WorkloadRef,
};

use crate::cases::TrustDomainBundle;
use crate::compare::{Decide, Oracle};
use crate::error::{Error, Result};
use crate::generate::{Kind, Peer, Probe};

/// `palisade-engine` as the [`Oracle`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOracle;

impl Oracle for EngineOracle {
    fn prepare(&self, name: &str, text: &str, bundle: &TrustDomainBundle) -> Result<Decide> {
        let set = palisade_engine::load(&[SourceFile::new(name, text)])
            .map_err(|e| Error(format!("engine cannot load {name}: {e}")))?;
        let options = Options {
            root_namespace: "istio-system".into(),
            trust_domain: bundle.trust_domain.clone(),
            trust_domain_aliases: bundle.aliases.clone(),
            path_normalization: PathNormalization::Base,
            extension_providers: Vec::new(),
        };
        let engine = palisade_engine::compile(&set, &options)
            .map_err(|e| Error(format!("engine cannot compile {name}: {e}")))?;
        Ok(Box::new(move |probe, listen| {
            let d = engine.decide(&to_request(probe, listen));
            (d.allowed(), d.explain())
        }))
    }
}

/// The engine request for a probe, as Envoy sees it: destination workload `foo`
/// (`app=httpbin, version=v1`), the listener's address and port, the peer's loopback address,
/// its certificate's URI SAN, SNI, `remote.ip` from `x-forwarded-for`, and the payload of the
/// probe's JWT as `jwt_authn` verified it (the `Authorization` header itself is not forwarded
/// to RBAC, so it is not among the headers).
pub fn to_request(probe: &Probe, listen: Ipv4Addr) -> Request {
    let principal = match &probe.peer {
        Peer::Mtls(uri) => Some(uri.clone()),
        _ => None,
    };
    let labels: BTreeMap<String, String> = [("app", "httpbin"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let http = (probe.kind == Kind::Http).then(|| {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &probe.headers {
            headers.entry(k.clone()).or_default().push(v.clone());
        }
        if let Some(x) = &probe.xff {
            headers
                .entry("x-forwarded-for".into())
                .or_default()
                .push(x.clone());
        }
        HttpAttributes {
            method: probe.method.clone(),
            host: probe.host.clone(),
            path: probe.path.clone(),
            headers,
        }
    });
    let remote_ip = match probe.kind {
        Kind::Http => probe.xff.as_ref().and_then(|x| x.parse::<IpAddr>().ok()),
        Kind::Tcp => None,
    };
    Request {
        protocol: match probe.kind {
            Kind::Http => Protocol::Http,
            Kind::Tcp => Protocol::Tcp,
        },
        source: Endpoint {
            ip: Some(IpAddr::V4(probe.source_ip)),
            port: None,
            principal,
            workload: None,
        },
        destination: Endpoint {
            ip: Some(IpAddr::V4(listen)),
            port: Some(probe.port),
            principal: None,
            workload: Some(WorkloadRef {
                namespace: "foo".into(),
                name: None,
                labels,
                service_account: None,
            }),
        },
        remote_ip,
        mtls: Some(principal_present(probe)),
        sni: if probe.tls() { probe.sni.clone() } else { None },
        http,
        jwt: match probe.kind {
            Kind::Http => probe.jwt_payload(),
            Kind::Tcp => None,
        },
        ..Request::default()
    }
}

fn principal_present(probe: &Probe) -> bool {
    matches!(probe.peer, Peer::Mtls(_))
}
