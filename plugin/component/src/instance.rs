//! The component instance's state and the engine calls behind each exported function.

use palisade_engine::container::{ContainerDecision, ContainerRequest};
use palisade_engine::{Decision, Engine, Options, Request, SourceFile, bundle};

/// One component instance: the engine it decides with, once loaded.
#[derive(Debug, Default)]
pub struct Instance {
    engine: Option<Engine>,
    digest: Option<String>,
}

impl Instance {
    /// Loads a compiled bundle; on error the previous engine stays.
    pub fn load_bundle(&mut self, bytes: &[u8]) -> Result<(), String> {
        let engine = bundle::decode_bundle(bytes).map_err(|e| e.to_string())?;
        self.engine = Some(engine);
        self.digest = bundle::digest_hex(bytes);
        Ok(())
    }

    /// Loads, validates and compiles YAML sources with the default options.
    pub fn load_sources(&mut self, sources: &[SourceFile]) -> Result<(), String> {
        let set = palisade_engine::load(sources).map_err(|e| e.to_string())?;
        let engine =
            palisade_engine::compile(&set, &Options::default()).map_err(|e| e.to_string())?;
        self.engine = Some(engine);
        self.digest = None;
        Ok(())
    }

    /// The loaded bundle's payload digest (none for YAML sources).
    pub fn bundle_digest(&self) -> Option<String> {
        self.digest.clone()
    }

    fn engine(&self) -> Result<&Engine, String> {
        self.engine.as_ref().ok_or_else(|| {
            "no policy loaded (call `load-bundle` or `load-sources` first)".to_string()
        })
    }

    /// Decides a container start from an OCI hook's inputs and extra annotations.
    pub fn admit(
        &self,
        state_json: &str,
        config_json: &str,
        annotations: Vec<(String, String)>,
    ) -> Result<ContainerDecision, String> {
        let engine = self.engine()?;
        let mut req = ContainerRequest::from_oci(state_json, config_json)?;
        req.annotations.extend(annotations);
        engine.decide_container(&req).map_err(String::from)
    }

    /// [`Instance::admit`] with the host's facts (`HostFacts` JSON).
    pub fn admit_on_host(
        &self,
        state_json: &str,
        config_json: &str,
        annotations: Vec<(String, String)>,
        host_facts_json: &str,
    ) -> Result<ContainerDecision, String> {
        let engine = self.engine()?;
        let mut req = ContainerRequest::from_oci(state_json, config_json)?;
        req.annotations.extend(annotations);
        req.host = Some(
            serde_json::from_str(host_facts_json)
                .map_err(|e| format!("invalid host facts: {e}"))?,
        );
        engine.decide_container(&req).map_err(String::from)
    }

    /// Decides a container start given as a whole `ContainerRequest` JSON.
    pub fn admit_request(&self, request_json: &str) -> Result<ContainerDecision, String> {
        let engine = self.engine()?;
        let req: ContainerRequest = serde_json::from_str(request_json)
            .map_err(|e| format!("invalid container request: {e}"))?;
        engine.decide_container(&req).map_err(String::from)
    }

    /// Decides a connection or HTTP request given as the engine's request JSON.
    pub fn decide(&self, request_json: &str) -> Result<Decision, String> {
        let engine = self.engine()?;
        let req: Request =
            serde_json::from_str(request_json).map_err(|e| format!("invalid request: {e}"))?;
        Ok(engine.decide(&req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {name: baseline, namespace: security}
spec:
  selector: {namespaces: [team]}
  images: {deniedTags: [latest]}
  privileges: {level: baseline}
"#;

    const STATE: &str = r#"{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":42,"bundle":"/b",
        "annotations":{"io.kubernetes.cri.sandbox-namespace":"team"}}"#;
    /// A baseline container: runc spec's masked and read-only sets, its device rule, an
    /// AppArmor profile.
    const CONFIG: &str = r#"{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0},
        "capabilities":{"bounding":["CAP_KILL"]},"apparmorProfile":"cri-containerd.apparmor.d"},
        "root":{"path":"rootfs"},
        "linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"mount"}],
        "resources":{"devices":[{"allow":false,"access":"rwm"}]},
        "maskedPaths":["/proc/acpi","/proc/asound","/proc/kcore","/proc/keys","/proc/latency_stats",
          "/proc/timer_list","/proc/timer_stats","/proc/sched_debug","/sys/firmware","/proc/scsi"],
        "readonlyPaths":["/proc/bus","/proc/fs","/proc/irq","/proc/sys","/proc/sysrq-trigger"]},
        "annotations":{"io.kubernetes.cri.image-name":"registry.example.com/app:1.0"}}"#;

    fn loaded() -> Instance {
        let mut i = Instance::default();
        assert_eq!(i.load_sources(&[SourceFile::new("p.yaml", POLICY)]), Ok(()));
        i
    }

    #[test]
    fn nothing_loaded_is_an_error_not_an_allow() {
        let i = Instance::default();
        let err = i.admit(STATE, CONFIG, vec![]).err().unwrap_or_default();
        assert!(err.contains("no policy loaded"), "{err}");
    }

    #[test]
    fn a_baseline_container_is_admitted() {
        let d = loaded().admit(STATE, CONFIG, vec![]);
        assert_eq!(d.map(|d| d.allowed), Ok(true));
    }

    #[test]
    fn extra_annotations_apply_last_and_a_latest_image_is_denied() {
        let d = loaded().admit(
            STATE,
            CONFIG,
            vec![(
                "io.kubernetes.cri.image-name".into(),
                "docker.io/library/busybox:latest".into(),
            )],
        );
        let controls: Vec<String> = d
            .map(|d| d.violations.into_iter().map(|v| v.control).collect())
            .unwrap_or_default();
        assert_eq!(controls, ["image.deniedTag"]);
    }

    #[test]
    fn host_facts_decide_a_namespace_path_by_identity() {
        let config = CONFIG.replace(
            r#"{"type":"network"}"#,
            r#"{"type":"network","path":"/proc/4242/ns/net"}"#,
        );
        let facts = |host: bool| {
            format!(
                r#"{{"namespaces":[{{"kind":"network","path":"/proc/4242/ns/net","host":{host}}}]}}"#
            )
        };
        let i = loaded();
        let controls = |d: Result<ContainerDecision, String>| -> Vec<String> {
            d.map(|d| d.violations.into_iter().map(|v| v.control).collect())
                .unwrap_or_else(|e| vec![e])
        };
        let pods = i.admit_on_host(STATE, &config, vec![], &facts(false));
        assert_eq!(controls(pods), Vec::<String>::new());
        let host = i.admit_on_host(STATE, &config, vec![], &facts(true));
        assert_eq!(controls(host), ["hostNetwork"]);
        // Without facts the spelling decides: a /proc path may be the host's.
        assert_eq!(controls(i.admit(STATE, &config, vec![])), ["hostNetwork"]);
        let err = i
            .admit_on_host(STATE, &config, vec![], "[")
            .err()
            .unwrap_or_default();
        assert!(err.contains("invalid host facts"), "{err}");
    }

    #[test]
    fn a_config_runtimes_read_differently_is_refused() {
        let config = CONFIG.replace(
            r#""process":{"#,
            r#""process":{"Capabilities":{"bounding":["CAP_SYS_ADMIN"]},"#,
        );
        let err = loaded()
            .admit(STATE, &config, vec![])
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("`process.Capabilities` is not the key `process.capabilities`"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_state_is_an_error() {
        let err = loaded()
            .admit("{", CONFIG, vec![])
            .err()
            .unwrap_or_default();
        assert!(err.contains("invalid OCI state"), "{err}");
    }

    #[test]
    fn a_bundle_round_trips_and_reports_its_digest() {
        let set = palisade_engine::load(&[SourceFile::new("p.yaml", POLICY)]);
        let bytes = set
            .ok()
            .and_then(|s| palisade_engine::compile(&s, &Options::default()).ok())
            .and_then(|e| bundle::encode_bundle(&e).ok())
            .unwrap_or_default();
        let mut i = Instance::default();
        assert_eq!(i.load_bundle(&bytes), Ok(()));
        assert_eq!(i.bundle_digest(), bundle::digest_hex(&bytes));
        assert!(i.load_bundle(b"not a bundle").is_err());
        assert!(i.engine.is_some(), "a bad bundle keeps the previous engine");
    }

    #[test]
    fn an_http_request_is_decided_with_its_rule() {
        let d = loaded().decide(
            r#"{"destination":{"port":80,"workload":{"namespace":"shop"}},"http":{"method":"GET","path":"/"}}"#,
        );
        assert_eq!(d.map(|d| d.allowed()), Ok(true));
    }
}
