//! The NRI plugin's `.wasm`, loaded and driven as NRI v0.12 does (through the stand-in
//! loader): its exports, `Configure`, `CreateContainer` allow and deny, a refused
//! configuration, the other calls, and memory handed back through `free`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use palisade_nri_loader::events::load_dir;
use palisade_nri_loader::proto::{
    ConfigureRequest, CreateContainerRequest, Empty, SynchronizeRequest,
    ValidateContainerAdjustmentResponse,
};
use palisade_nri_loader::{CallError, Creation, LoadError, NriPlugin, REQUIRED_EXPORTS};

fn event(name: &str) -> CreateContainerRequest {
    load_dir(&common::testdata())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no event {name}"))
        .1
        .request
        .to_proto()
        .unwrap()
}

fn configured() -> NriPlugin {
    common::loader().load(&common::policy()).unwrap()
}

fn denial(plugin: &mut NriPlugin, name: &str) -> String {
    match plugin.create_container(&event(name)) {
        Creation::Failed(CallError::Plugin(msg)) => msg,
        other => panic!("{name}: expected a denial, got {other:?}"),
    }
}

#[test]
fn the_module_has_every_export_nri_requires_and_api_version_1() {
    // `instantiate` fails with NRI's "<name> is not exported" otherwise.
    let plugin = common::loader().instantiate().unwrap();
    assert_eq!(plugin.events(), 0, "not configured yet");
    assert_eq!(REQUIRED_EXPORTS.len(), 18);
}

#[test]
fn configure_subscribes_to_create_container_only_and_logs_through_env_log() {
    let plugin = configured();
    assert_eq!(plugin.events(), 1 << 3);
    let line = plugin
        .logs()
        .iter()
        .find(|l| l.msg.contains("ContainerPolicies loaded"))
        .unwrap();
    assert_eq!(line.level, 2, "info");
    assert!(
        line.msg
            .contains("2 ContainerPolicies loaded from inline YAML"),
        "{}",
        line.msg
    );
    assert!(
        line.msg.contains("runtime containerd v2.2.1, NRI v0.12.2"),
        "{}",
        line.msg
    );
}

#[test]
fn an_allowed_container_gets_the_decision_annotation() {
    let mut plugin = configured();
    let Creation::Created(rsp) = plugin.create_container(&event("01-shop-web-allowed")) else {
        panic!("denied");
    };
    let annotations = rsp.adjust.unwrap().annotations;
    assert_eq!(annotations.len(), 1);
    let value: serde_json::Value =
        serde_json::from_str(&annotations["palisade.dev/decision"]).unwrap();
    assert_eq!(value["allowed"], true);
    assert_eq!(value["policies"], serde_json::json!(["platform/baseline"]));
    assert_eq!(
        value["unverified"],
        serde_json::json!([
            "appArmor",
            "capabilities",
            "devices",
            "noNewPrivileges",
            "procMount",
            "readOnlyRootFilesystem",
            "selinux",
            "sysctls"
        ])
    );
}

#[test]
fn a_host_pid_container_is_denied_with_the_reason() {
    let msg = denial(&mut configured(), "02-shop-debug-host-pid");
    assert!(
        msg.starts_with("palisade: container `shop/debug-shell/shell` (id `"),
        "{msg}"
    );
    assert!(msg.contains("denied by ContainerPolicy (1 violation): platform/baseline [hostPID]: the container shares the host's `pid` namespace"), "{msg}");
}

#[test]
fn a_latest_image_is_denied() {
    let msg = denial(&mut configured(), "03-shop-nginx-latest");
    assert!(msg.contains("platform/baseline [image.deniedTag]: image `docker.io/library/nginx:latest` uses tag `latest`"), "{msg}");
}

#[test]
fn a_docker_socket_mount_is_denied() {
    let msg = denial(&mut configured(), "04-ci-runner-docker-sock");
    assert!(msg.contains("platform/baseline [hostPath]: the container mounts host paths `/var/run/docker.sock` at `/var/run/docker.sock`"), "{msg}");
}

#[test]
fn every_violation_is_listed_not_just_the_first() {
    let msg = denial(&mut configured(), "05-monitoring-node-exporter");
    assert!(msg.contains("(3 violations)"), "{msg}");
    for control in ["[hostNetwork]", "[hostPID]", "[hostPath]"] {
        assert!(msg.contains(control), "{control}: {msg}");
    }
}

#[test]
fn a_privileged_container_is_denied_on_what_nri_shows_and_the_rest_is_named_unchecked() {
    let msg = denial(&mut configured(), "09-payments-privileged");
    assert!(msg.contains("(4 violations)"), "{msg}");
    assert!(msg.contains("platform/baseline [devices]"), "{msg}");
    assert!(
        msg.contains("payments/payments-restricted [runAsNonRoot]"),
        "{msg}"
    );
    assert!(
        msg.contains("payments/payments-restricted [seccomp]"),
        "{msg}"
    );
    assert!(
        msg.ends_with("(not visible through NRI, unchecked here: appArmor, capabilities, devices, noNewPrivileges, procMount, readOnlyRootFilesystem, selinux, sysctls)"),
        "{msg}"
    );
}

#[test]
fn a_denial_is_logged_at_warning_level() {
    let mut plugin = configured();
    let _ = plugin.create_container(&event("03-shop-nginx-latest"));
    assert!(
        plugin
            .logs()
            .iter()
            .any(|l| l.level == 3 && l.msg.contains("[image.deniedTag]"))
    );
}

#[test]
fn a_bad_configuration_is_refused() {
    let cases = [
        ("", "the configuration is empty"),
        ("kind: [", "the configured policy is invalid"),
        (
            "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: x}\nspec: {privileges: {level: superuser}}\n",
            "superuser",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\nspec: {}\n",
            "holds no ContainerPolicy",
        ),
        (
            "UExTRAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            "the configured bundle is refused",
        ),
    ];
    for (config, want) in cases {
        match common::loader().load(config) {
            Err(LoadError::Configure(msg)) => {
                assert!(msg.starts_with("palisade: "), "{msg}");
                assert!(msg.contains(want), "{config:?}: {msg}");
            }
            other => panic!("{config:?}: expected a refused configuration, got {other:?}"),
        }
    }
}

#[test]
fn a_compiled_bundle_in_base64_is_accepted() {
    use base64::Engine as _;
    let set = palisade_engine::load(&[palisade_engine::SourceFile::new(
        "policy.yaml",
        common::policy(),
    )])
    .unwrap();
    let engine = palisade_engine::compile(&set, &palisade_engine::Options::default()).unwrap();
    let bundle = palisade_engine::encode_bundle(&engine).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut plugin = common::loader().load(&b64).unwrap();
    assert!(
        plugin
            .logs()
            .iter()
            .any(|l| l.msg.contains("loaded from bundle sha256:"))
    );
    assert!(matches!(
        plugin.create_container(&event("03-shop-nginx-latest")),
        Creation::Failed(CallError::Plugin(_))
    ));
}

#[test]
fn an_unconfigured_plugin_denies() {
    let mut plugin = common::loader().instantiate().unwrap();
    let rsp = plugin.call::<_, Empty>("plugin_create_container", &event("01-shop-web-allowed"));
    assert!(
        matches!(&rsp, Err(CallError::Plugin(m)) if m.contains("not configured")),
        "{rsp:?}"
    );
}

#[test]
fn a_malformed_request_is_denied() {
    let mut plugin = configured();
    let out = plugin.call_raw("plugin_create_container", &[0x12, 0xff, 0xff, 0xff, 0x0f]);
    assert!(
        matches!(&out, Err(CallError::Plugin(m)) if m.contains("malformed CreateContainerRequest")),
        "{out:?}"
    );
}

#[test]
fn synchronize_echoes_more_and_the_other_calls_answer_empty() {
    let mut plugin = configured();
    let rsp = plugin
        .synchronize(&SynchronizeRequest {
            more: true,
            ..SynchronizeRequest::default()
        })
        .unwrap();
    assert!(rsp.more);
    // An empty request is passed as (0, 0) and an empty reply comes back as 0.
    assert_eq!(
        plugin.call_raw("plugin_synchronize", &[]).unwrap(),
        Vec::<u8>::new()
    );
    let v: ValidateContainerAdjustmentResponse = plugin
        .call(
            "plugin_validate_container_adjustment",
            &event("01-shop-web-allowed"),
        )
        .unwrap();
    assert!(!v.reject);
    for export in REQUIRED_EXPORTS {
        if [
            "plugin_configure",
            "plugin_synchronize",
            "plugin_create_container",
        ]
        .contains(&export)
        {
            continue;
        }
        let out = plugin.call_raw(export, &[]);
        assert_eq!(out, Ok(Vec::new()), "{export}");
    }
    plugin.shutdown().unwrap();
    assert!(plugin.logs().iter().any(|l| l.msg == "palisade: shut down"));
}

#[test]
fn reply_and_request_buffers_are_freed() {
    let mut plugin = configured();
    let allowed = event("01-shop-web-allowed");
    let denied = event("05-monitoring-node-exporter");
    for _ in 0..20 {
        let _ = plugin.create_container(&allowed);
        let _ = plugin.create_container(&denied);
    }
    let before = plugin.memory_size();
    for _ in 0..200 {
        let _ = plugin.create_container(&allowed);
        let _ = plugin.create_container(&denied);
    }
    assert_eq!(plugin.memory_size(), before, "memory grew: a buffer leaks");
}

#[test]
fn configuring_again_replaces_the_policy() {
    let mut plugin = configured();
    plugin
        .configure(&ConfigureRequest {
            config: "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: open}\nspec: {}\n".into(),
            ..ConfigureRequest::default()
        })
        .unwrap();
    assert!(matches!(
        plugin.create_container(&event("03-shop-nginx-latest")),
        Creation::Created(_)
    ));
}
