//! The decision path's errors by name: each way a request or a container start cannot be
//! decided gives its own variant, and a decision's JSON still carries the same message text
//! (the texts below are the engine's wording before the errors were typed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::container::{ContainerRequest, decide_container};
use palisade_engine::error::{
    ConfigError, ContainerError, DecisionError, NetworkError, Side, rejection_status,
};
use palisade_engine::{
    Decision, Engine, Options, Request, SourceFile, Step, Verdict, compile, load,
};
use serde_json::json;

const POLICIES: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: cluster}
spec:
  nodes:
  - {name: node-a, ips: [192.168.0.10]}
  namespaces:
  - {name: shop}
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ips: [10.1.0.5], serviceAccount: web, nodeName: node-a}
  - {name: twin-1, namespace: shop, labels: {app: twin}, ips: [10.1.2.2], serviceAccount: twin, nodeName: node-a}
  - {name: twin-2, namespace: shop, labels: {app: twin}, ips: [10.1.2.3], serviceAccount: twin, nodeName: node-a}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{}]
"#;

fn engine() -> Engine {
    let set = load(&[SourceFile::new("errors.yaml", POLICIES)]).unwrap();
    compile(&set, &Options::default()).unwrap()
}

fn decide(e: &Engine, request: serde_json::Value) -> Decision {
    let req: Request = serde_json::from_value(request).unwrap();
    let d = e.decide(&req);
    assert_eq!((d.verdict, d.step), (Verdict::Deny, Step::Error), "{d:?}");
    d
}

#[test]
fn an_unknown_workload_is_named_and_reads_as_before_in_json() {
    let d = decide(
        &engine(),
        json!({"destination": {"workload": {"namespace": "shop", "name": "nope"}, "port": 80}}),
    );
    assert!(
        matches!(&d.errors[..], [DecisionError::UnknownWorkload { namespace, name }] if namespace == "shop" && name == "nope"),
        "{:?}",
        d.errors
    );
    let text = "workload `shop/nope` is not in the inventory";
    assert_eq!(serde_json::to_value(&d).unwrap()["errors"], json!([text]));
    assert_eq!(d.errors[0].code(), "palisade::unknown_workload");
}

#[test]
fn an_address_no_workload_holds_and_no_destination_at_all_are_told_apart() {
    let e = engine();
    let d = decide(
        &e,
        json!({"destination": {"ip": "203.0.113.7", "port": 80}}),
    );
    assert!(
        matches!(d.errors[..], [DecisionError::NoWorkloadForAddress { ip }] if ip.to_string() == "203.0.113.7"),
        "{:?}",
        d.errors
    );
    assert_eq!(
        d.errors,
        ["no workload in the inventory has address `203.0.113.7`"]
    );
    let d = decide(&e, json!({"destination": {"port": 80}}));
    assert!(matches!(d.errors[..], [DecisionError::NoDestination]));
    assert_eq!(
        d.error_message(),
        "the request names no destination workload or address"
    );
}

#[test]
fn a_network_policy_end_it_cannot_resolve_is_a_network_error_naming_the_side() {
    let e = engine();
    // The destination resolves; the source names an identity two workloads share.
    let d = decide(
        &e,
        json!({
            "source": {"principal": "spiffe://cluster.local/ns/shop/sa/twin"},
            "destination": {"workload": {"namespace": "shop", "name": "web"}, "port": 80}
        }),
    );
    assert!(
        matches!(
            &d.errors[..],
            [DecisionError::Network(NetworkError::SharedIdentity { side: Side::Source, namespace, service_account })]
                if namespace == "shop" && service_account == "twin"
        ),
        "{:?}",
        d.errors
    );
    assert_eq!(
        d.errors,
        [
            "the source identity `shop/twin` is shared by several inventory workloads; give its workload or address"
        ]
    );
    let d = decide(
        &e,
        json!({"destination": {"workload": {"namespace": "shop", "name": "web"}, "port": 80}}),
    );
    assert!(matches!(
        d.errors[..],
        [DecisionError::Network(NetworkError::NoEndpoint {
            side: Side::Source
        })]
    ));
    assert_eq!(
        d.errors,
        [
            "NetworkPolicy needs the source workload, address or SPIFFE identity, and the request gives none"
        ]
    );
}

#[test]
fn a_decision_read_back_from_json_equals_the_one_written() {
    let d = decide(
        &engine(),
        json!({"destination": {"workload": {"namespace": "shop", "name": "nope"}, "port": 80}}),
    );
    let back: Decision = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert!(matches!(&back.errors[..], [DecisionError::Reported(_)]));
    assert_eq!(back, d);
    assert_ne!(
        back.errors[0],
        DecisionError::from("workload `shop/other` is not in the inventory")
    );
}

#[test]
fn container_starts_that_cannot_be_read_name_what_is_wrong() {
    let set = load(&[SourceFile::new("errors.yaml", POLICIES)]).unwrap();
    let config = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":1000,"gid":1000},"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#;
    let state = |id: &str| json!({"id": id, "status": "creating", "bundle": "/b"}).to_string();
    let err = ContainerRequest::from_oci("{", config).unwrap_err();
    assert!(matches!(err, ContainerError::BadState(_)), "{err:?}");
    assert!(err.to_string().starts_with("invalid OCI state: "), "{err}");
    let err = ContainerRequest::from_oci(&state("c1"), "").unwrap_err();
    assert_eq!(err, ContainerError::Config(ConfigError::NoDocument));
    assert_eq!(err.to_string(), "invalid config.json: no JSON document");
    let twice = config.replace(
        r#""root""#,
        r#""linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]},"root""#,
    );
    let err = ContainerRequest::from_oci(&state("c1"), &twice).unwrap_err();
    assert!(
        matches!(err, ContainerError::Config(ConfigError::Ambiguous(_))),
        "{err:?}"
    );
    let req = ContainerRequest::from_oci(&state(""), config).unwrap();
    let err = decide_container(&set.container, &set.inventory, &req).unwrap_err();
    assert_eq!(err, ContainerError::EmptyId);
    assert_eq!(String::from(err), "invalid OCI state: `id` is empty");
    assert!(
        decide_container(
            &set.container,
            &set.inventory,
            &ContainerRequest::from_oci(&state("c1"), config).unwrap()
        )
        .is_ok()
    );
}

#[test]
fn jwt_rejections_keep_envoy_wording_and_status() {
    let e = DecisionError::JwtRejected(palisade_engine::authn::AUDIENCE_NOT_ALLOWED);
    assert_eq!(e.to_string(), "Audiences in Jwt are not allowed");
    assert_eq!(rejection_status(&e.to_string()), 403);
    assert_eq!(rejection_status("Jwt is missing"), 401);
}
