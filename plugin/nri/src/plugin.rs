//! The plugin's behaviour, one method per NRI call, from request bytes to reply bytes — no
//! wasm, so it builds and is tested natively. The wasm ABI (`abi`, wasm32 only) only moves
//! bytes in and out of linear memory and calls these.
//!
//! A [`Reply`] is `Ok(protobuf bytes)` or `Err(text)`: the ABI sends the text with the error
//! bit set, and NRI fails the call with it — for `CreateContainer`, container creation fails
//! with that message (`pkg/adaptation/plugin.go`, `createContainer`).

use palisade_engine::Engine;
use palisade_engine::container::ContainerDecision;
use palisade_engine::provenance::Attestation;
use prost::Message;

use crate::config::{self, Policy};
use crate::convert::Converted;
use crate::proto::{
    ConfigureRequest, ConfigureResponse, ContainerAdjustment, CreateContainerRequest,
    CreateContainerResponse, Event, LogLevel, SynchronizeRequest, SynchronizeResponse,
};

/// The annotation the allow adjustment sets.
pub const DECISION_ANNOTATION: &str = "palisade.dev/decision";

/// Protobuf bytes to reply with, or an error text.
pub type Reply = Result<Vec<u8>, String>;

/// Where the plugin's log lines go (NRI's `env.log` host function in wasm).
pub trait Log {
    /// Logs one line.
    fn log(&mut self, level: LogLevel, msg: &str);
}

/// A decision on a converted request, with what NRI could not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The engine's decision.
    pub decision: ContainerDecision,
    /// Controls NRI gives no evidence for (see [`crate::convert`]).
    pub unseen: Vec<&'static str>,
}

/// Converts and decides: what the plugin does for `CreateContainer`, and what a native
/// comparison runs. `Err` when the request cannot be read or decided; the plugin denies then.
pub fn decide(engine: &Engine, req: &CreateContainerRequest) -> Result<Verdict, String> {
    decide_with(engine, &[], req)
}

/// [`decide`] with the provenance statements the configuration carries.
pub fn decide_with(
    engine: &Engine,
    attestations: &[Attestation],
    req: &CreateContainerRequest,
) -> Result<Verdict, String> {
    let mut converted = Converted::try_from(req).map_err(|e| e.to_string())?;
    if let Some(host) = converted.request.host.as_mut() {
        host.attestations = attestations.to_vec();
    }
    let decision = engine.decide_container(&converted.request)?;
    Ok(Verdict {
        decision,
        unseen: converted.unseen,
    })
}

fn who(d: &ContainerDecision) -> String {
    let s = &d.subject;
    let mut name = String::new();
    for part in [&s.namespace, &s.pod, &s.container].into_iter().flatten() {
        if !name.is_empty() {
            name.push('/');
        }
        name.push_str(part);
    }
    if name.is_empty() {
        format!("container `{}`", s.id)
    } else {
        format!("container `{name}` (id `{}`)", s.id)
    }
}

/// The error text of a deny: every violation, then what was not visible.
pub fn deny_message(v: &Verdict) -> String {
    let n = v.decision.violations.len();
    let mut out = format!(
        "palisade: {} denied by ContainerPolicy ({n} violation{}): ",
        who(&v.decision),
        if n == 1 { "" } else { "s" }
    );
    let items: Vec<String> = v
        .decision
        .violations
        .iter()
        .map(ToString::to_string)
        .collect();
    out.push_str(&items.join("; "));
    if !v.unseen.is_empty() {
        out.push_str(&format!(
            " (not visible through NRI, unchecked here: {})",
            v.unseen.join(", ")
        ));
    }
    out
}

/// The value of [`DECISION_ANNOTATION`] on an allowed container (JSON).
pub fn allow_annotation(v: &Verdict) -> String {
    serde_json::json!({
        "allowed": true,
        "policies": v.decision.policies,
        "unverified": v.unseen,
    })
    .to_string()
}

/// The plugin: configured once, then asked about each container.
#[derive(Debug, Default)]
pub struct Plugin {
    policy: Option<Policy>,
}

impl Plugin {
    /// An unconfigured plugin (denies every container until configured).
    pub const fn new() -> Self {
        Plugin { policy: None }
    }

    /// `Configure`: loads the policy and subscribes to `CreateContainer` only.
    pub fn configure(&mut self, req: &[u8], log: &mut dyn Log) -> Reply {
        let req = ConfigureRequest::decode(req)
            .map_err(|e| format!("palisade: malformed ConfigureRequest: {e}"))?;
        let policy = config::parse(&req.config).map_err(|e| {
            let msg = format!("palisade: {e}");
            log.log(LogLevel::Error, &msg);
            msg
        })?;
        log.log(
            LogLevel::Info,
            &format!(
                "palisade: {} ContainerPolicies loaded from {} (runtime {} {}, NRI {})",
                policy.engine.container_policies().len(),
                policy.source,
                req.runtime_name,
                req.runtime_version,
                req.nri_version
            ),
        );
        self.policy = Some(policy);
        Ok(ConfigureResponse {
            events: Event::CreateContainer.mask(),
        }
        .encode_to_vec())
    }

    /// `Synchronize`: nothing to update; echoes `more` as NRI requires of a plugin that takes
    /// split synchronisation messages.
    pub fn synchronize(&mut self, req: &[u8]) -> Reply {
        let req = SynchronizeRequest::decode(req)
            .map_err(|e| format!("palisade: malformed SynchronizeRequest: {e}"))?;
        Ok(SynchronizeResponse { more: req.more }.encode_to_vec())
    }

    /// `Shutdown`: forgets the policy.
    pub fn shutdown(&mut self, log: &mut dyn Log) -> Reply {
        self.policy = None;
        log.log(LogLevel::Info, "palisade: shut down");
        Ok(Vec::new())
    }

    /// `CreateContainer`: an error (creation fails) listing every violation, or an
    /// adjustment recording the decision in [`DECISION_ANNOTATION`].
    pub fn create_container(&self, req: &[u8], log: &mut dyn Log) -> Reply {
        let deny = |log: &mut dyn Log, msg: String| -> Reply {
            log.log(LogLevel::Warn, &msg);
            Err(msg)
        };
        let Some(policy) = &self.policy else {
            return deny(
                log,
                "palisade: not configured; denying every container (fail closed)".into(),
            );
        };
        let req = match CreateContainerRequest::decode(req) {
            Ok(r) => r,
            Err(e) => {
                return deny(
                    log,
                    format!(
                        "palisade: malformed CreateContainerRequest, denied (fail closed): {e}"
                    ),
                );
            }
        };
        let verdict = match decide_with(&policy.engine, &policy.attestations, &req) {
            Ok(v) => v,
            Err(e) => return deny(log, format!("palisade: denied (fail closed): {e}")),
        };
        if !verdict.decision.allowed {
            return deny(log, deny_message(&verdict));
        }
        log.log(
            LogLevel::Debug,
            &format!("palisade: {} allowed", who(&verdict.decision)),
        );
        let adjust = ContainerAdjustment {
            annotations: [(DECISION_ANNOTATION.to_string(), allow_annotation(&verdict))].into(),
        };
        Ok(CreateContainerResponse {
            adjust: Some(adjust),
        }
        .encode_to_vec())
    }

    /// Every other event (the plugin does not subscribe to them): an empty reply.
    pub fn ignore(&self) -> Reply {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Container, Image, LinuxContainer, LinuxNamespace, PodSandbox};

    #[derive(Default)]
    struct Lines(Vec<(LogLevel, String)>);

    impl Log for Lines {
        fn log(&mut self, level: LogLevel, msg: &str) {
            self.0.push((level, msg.to_string()));
        }
    }

    const POLICY: &str = "apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {name: baseline}
spec:
  images: {deniedTags: [latest]}
  privileges: {level: baseline}
";

    fn configured() -> Plugin {
        let mut p = Plugin::new();
        let req = ConfigureRequest {
            config: POLICY.into(),
            runtime_name: "containerd".into(),
            runtime_version: "2.2.1".into(),
            registration_timeout: 5000,
            request_timeout: 2000,
            nri_version: "v0.12.2".into(),
        };
        let r = p.configure(&req.encode_to_vec(), &mut Lines::default());
        assert!(r.is_ok(), "{r:?}");
        p
    }

    fn request(image: &str, namespaces: &[&str]) -> Vec<u8> {
        CreateContainerRequest {
            pod: Some(PodSandbox {
                id: "sb".into(),
                name: "web-0".into(),
                uid: "u".into(),
                namespace: "shop".into(),
                ..PodSandbox::default()
            }),
            container: Some(Container {
                id: "c1".into(),
                pod_sandbox_id: "sb".into(),
                name: "web".into(),
                image: Some(Image {
                    name: image.into(),
                    ..Image::default()
                }),
                linux: Some(LinuxContainer {
                    namespaces: namespaces
                        .iter()
                        .map(|t| LinuxNamespace {
                            r#type: (*t).into(),
                            path: String::new(),
                        })
                        .collect(),
                    ..LinuxContainer::default()
                }),
                ..Container::default()
            }),
        }
        .encode_to_vec()
    }

    /// A plugin configured with a provenance rule (as a bundle) and one attestation for
    /// `attested`, made by `builder`.
    #[allow(clippy::unwrap_used)]
    fn with_provenance(attested: &str, builder: &str) -> Plugin {
        use base64::Engine as _;
        use palisade_engine::provenance::{
            ATTEST_BUILD_TYPE, Envelope, PAYLOAD_TYPE, StatementSpec,
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let policy = format!(
            "apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {{name: pipeline, namespace: shop}}
spec:
  images:
    provenance:
      builders: [https://ci.example.com/b@v1]
      sources: [https://git.example.com/shop/web]
      keys: [{{keyId: ci, publicKey: \"{}\"}}]
",
            b64.encode(key.verifying_key().to_bytes())
        );
        let set =
            palisade_engine::load(&[palisade_engine::SourceFile::new("p.yaml", policy)]).unwrap();
        let engine = palisade_engine::compile(&set, &palisade_engine::Options::default()).unwrap();
        let bundle = b64.encode(palisade_engine::encode_bundle(&engine).unwrap());
        let body = StatementSpec {
            name: "registry.example.com/shop/web".into(),
            digest: attested.into(),
            builder: builder.into(),
            build_type: ATTEST_BUILD_TYPE.into(),
            repository: "https://git.example.com/shop/web".into(),
            git_ref: "refs/heads/main".into(),
            revision: "c27d339ee6075c1f744c5d4b200f7901aad2c369".into(),
        }
        .to_json()
        .unwrap();
        let envelope = Envelope::sign(PAYLOAD_TYPE, &body, "ci", &key);
        let config = serde_json::json!({"bundle": bundle, "attestations": [envelope]});
        let mut p = Plugin::new();
        let req = ConfigureRequest {
            config: config.to_string(),
            ..ConfigureRequest::default()
        };
        let r = p.configure(&req.encode_to_vec(), &mut Lines::default());
        assert!(r.is_ok(), "{r:?}");
        p
    }

    /// A request whose image NRI names with its manifest digest, as containerd fills it.
    #[allow(clippy::unwrap_used)]
    fn request_with_digest(digest: &str) -> Vec<u8> {
        let mut req = CreateContainerRequest::decode(
            request(
                "registry.example.com/shop/web:1.2",
                &["pid", "ipc", "network"],
            )
            .as_slice(),
        )
        .unwrap();
        if let Some(c) = req.container.as_mut() {
            c.image = Some(Image {
                name: "registry.example.com/shop/web:1.2".into(),
                digest: digest.into(),
                ..Image::default()
            });
        }
        req.encode_to_vec()
    }

    #[test]
    fn provenance_from_the_configuration_admits_the_attested_digest_and_denies_others() {
        const D1: &str = "sha256:1c42ddc0285b9c25135be3bf345e6a041271b784b22a6f6cab6588dab93c5980";
        const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000002";
        let p = with_provenance(D1, "https://ci.example.com/b@v1");
        let ok = p.create_container(&request_with_digest(D1), &mut Lines::default());
        assert!(ok.is_ok(), "{ok:?}");
        let msg = p
            .create_container(&request_with_digest(D2), &mut Lines::default())
            .err()
            .unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "[image.provenance]: image `registry.example.com/shop/web:1.2`: no verified provenance statement from an allowed builder and source names image `{D2}`; attestations[0]: the statement names `{D1}`, not the image `{D2}`"
            )),
            "{msg}"
        );
        let other = with_provenance(D1, "https://ci.example.com/b@v1-fork");
        let msg = other
            .create_container(&request_with_digest(D1), &mut Lines::default())
            .err()
            .unwrap_or_default();
        assert!(
            msg.contains("attestations[0]: built by `https://ci.example.com/b@v1-fork`, not by an allowed builder (`https://ci.example.com/b@v1`)"),
            "{msg}"
        );
    }

    #[test]
    fn configure_subscribes_to_create_container_only() {
        let mut p = Plugin::new();
        let req = ConfigureRequest {
            config: POLICY.into(),
            ..ConfigureRequest::default()
        };
        let out = p.configure(&req.encode_to_vec(), &mut Lines::default());
        let events = out
            .ok()
            .and_then(|b| ConfigureResponse::decode(b.as_slice()).ok())
            .map(|r| r.events);
        assert_eq!(events, Some(8));
    }

    #[test]
    fn an_allowed_container_gets_the_decision_annotation() {
        let out = configured().create_container(
            &request(
                "registry.example.com/shop/web:1.2",
                &["pid", "ipc", "network"],
            ),
            &mut Lines::default(),
        );
        let rsp = out
            .ok()
            .and_then(|b| CreateContainerResponse::decode(b.as_slice()).ok());
        let value = rsp
            .and_then(|r| r.adjust)
            .and_then(|a| a.annotations.get(DECISION_ANNOTATION).cloned())
            .unwrap_or_default();
        assert!(
            value.starts_with(r#"{"allowed":true,"policies":["default/baseline"]"#),
            "{value}"
        );
        assert!(value.contains("capabilities"), "{value}");
    }

    #[test]
    fn a_denied_container_gets_an_error_listing_every_violation() {
        let mut lines = Lines::default();
        let out = configured().create_container(&request("nginx", &["network"]), &mut lines);
        let msg = out.err().unwrap_or_default();
        assert!(msg.contains("3 violations"), "{msg}");
        assert!(msg.contains("[image.deniedTag]"), "{msg}");
        assert!(msg.contains("[hostPID]"), "{msg}");
        assert!(msg.contains("[hostIPC]"), "{msg}");
        assert!(
            msg.contains("container `shop/web-0/web` (id `c1`)"),
            "{msg}"
        );
        assert!(lines.0.iter().any(|(l, _)| *l == LogLevel::Warn));
    }

    #[test]
    fn before_configure_every_container_is_denied() {
        let out = Plugin::new().create_container(&request("x:1", &[]), &mut Lines::default());
        assert!(out.is_err_and(|m| m.contains("not configured")));
    }

    #[test]
    fn a_malformed_request_is_denied() {
        let out = configured().create_container(&[0xff, 0xff, 0xff], &mut Lines::default());
        assert!(out.is_err_and(|m| m.contains("malformed")));
    }

    #[test]
    fn a_bad_configuration_is_refused_and_logged() {
        let mut p = Plugin::new();
        let mut lines = Lines::default();
        let req = ConfigureRequest {
            config: "kind: [".into(),
            ..ConfigureRequest::default()
        };
        assert!(p.configure(&req.encode_to_vec(), &mut lines).is_err());
        assert!(lines.0.iter().any(|(l, _)| *l == LogLevel::Error));
    }

    #[test]
    fn synchronize_echoes_more() {
        let mut p = configured();
        let req = SynchronizeRequest {
            more: true,
            ..SynchronizeRequest::default()
        };
        let out = p
            .synchronize(&req.encode_to_vec())
            .ok()
            .and_then(|b| SynchronizeResponse::decode(b.as_slice()).ok());
        assert_eq!(out.map(|r| r.more), Some(true));
        assert_eq!(p.synchronize(&[]), Ok(Vec::new()));
    }
}
