//! Istio's validation rules and our input errors: each bad input is refused with a message,
//! the field path and the line. One named case a row.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::{Options, SourceFile, compile, decode_bundle, encode_bundle, load};

fn spec(body: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\nspec:\n{body}"
    )
}

#[test]
fn invalid_policies_are_refused_with_message_path_and_line() {
    // (case, YAML, message fragment, field path, line)
    let rows: &[(&str, String, &str, &str, usize)] = &[
        (
            "wildcard in the middle",
            spec("  rules:\n  - from:\n    - source:\n        principals: [\"a*b\"]\n"),
            "wildcard is only allowed at the start or end",
            "spec.rules[0].from[0].source.principals[0]",
            10,
        ),
        (
            "two wildcards",
            spec("  rules:\n  - to:\n    - operation:\n        hosts: [\"*.a.*\"]\n"),
            "wildcard is only allowed",
            "spec.rules[0].to[0].operation.hosts[0]",
            10,
        ),
        (
            "empty value",
            spec("  rules:\n  - to:\n    - operation:\n        methods: [GET, \"\"]\n"),
            "empty value is not allowed in `methods`",
            "spec.rules[0].to[0].operation.methods[1]",
            10,
        ),
        (
            "DENY without rules",
            spec("  action: DENY\n"),
            "DENY policy without `rules` is meaningless",
            "spec",
            7,
        ),
        (
            "serviceAccounts with principals",
            spec(
                "  rules:\n  - from:\n    - source:\n        principals: [a]\n        serviceAccounts: [b]\n",
            ),
            "`serviceAccounts` cannot be set together with `principals` or `namespaces`",
            "spec.rules[0].from[0].source",
            10,
        ),
        (
            "serviceAccounts with namespaces",
            spec(
                "  rules:\n  - from:\n    - source:\n        notNamespaces: [a]\n        serviceAccounts: [b]\n",
            ),
            "cannot be set together",
            "spec.rules[0].from[0].source",
            10,
        ),
        (
            "unknown when key",
            spec("  rules:\n  - when:\n    - key: request.colour\n      values: [red]\n"),
            "unknown attribute `request.colour`",
            "spec.rules[0].when[0].key",
            9,
        ),
        (
            "when without values",
            spec("  rules:\n  - when:\n    - key: source.ip\n"),
            "needs `values` or `notValues`",
            "spec.rules[0].when[0]",
            9,
        ),
        (
            "bad CIDR",
            spec("  rules:\n  - from:\n    - source:\n        ipBlocks: [10.0.0.0/33]\n"),
            "invalid IP address or CIDR block `10.0.0.0/33`",
            "spec.rules[0].from[0].source.ipBlocks[0]",
            10,
        ),
        (
            "bad CIDR in a condition",
            spec("  rules:\n  - when:\n    - key: destination.ip\n      values: [nope]\n"),
            "invalid IP address or CIDR block `nope`",
            "spec.rules[0].when[0].values[0]",
            10,
        ),
        (
            "bad port",
            spec("  rules:\n  - to:\n    - operation:\n        ports: [\"http\"]\n"),
            "invalid port `http`",
            "spec.rules[0].to[0].operation.ports[0]",
            10,
        ),
        (
            "port out of range in a condition",
            spec(
                "  rules:\n  - when:\n    - key: destination.port\n      notValues: [\"70000\"]\n",
            ),
            "invalid port `70000`",
            "spec.rules[0].when[0].notValues[0]",
            10,
        ),
        (
            "unknown field with a hint",
            spec("  rules:\n  - from:\n    - source:\n        principal: [a]\n"),
            "unknown field `principal`",
            "spec.rules[0].from[0].source.principal",
            10,
        ),
        (
            "CUSTOM without a provider is refused at the action",
            spec("  action: CUSTOM\n  rules: [{}]\n"),
            "action `CUSTOM` needs a `provider`",
            "spec.action",
            7,
        ),
        (
            "a provider on a DENY policy is refused at the provider",
            spec("  action: DENY\n  provider: {name: ext}\n  rules: [{}]\n"),
            "`provider` is only allowed with action `CUSTOM`",
            "spec.provider",
            8,
        ),
        (
            "unknown action",
            spec("  action: PERMIT\n  rules: [{}]\n"),
            "unknown action `PERMIT`",
            "spec.action",
            7,
        ),
        (
            "empty from",
            spec("  rules:\n  - from: []\n"),
            "`from` must not be empty",
            "spec.rules[0].from",
            8,
        ),
        (
            "empty source",
            spec("  rules:\n  - from:\n    - source: {}\n"),
            "`source` must set at least one field",
            "spec.rules[0].from[0].source",
            9,
        ),
        (
            "empty operation",
            spec("  rules:\n  - to:\n    - operation: {}\n"),
            "`operation` must set at least one field",
            "spec.rules[0].to[0].operation",
            9,
        ),
        (
            "path template with a partial segment",
            spec("  rules:\n  - to:\n    - operation:\n        paths: [\"/a/b{*}\"]\n"),
            "invalid path template `/a/b{*}`",
            "spec.rules[0].to[0].operation.paths[0]",
            10,
        ),
        (
            "path template with an operator after {**}",
            spec("  rules:\n  - to:\n    - operation:\n        paths: [\"/{**}/a/{*}\"]\n"),
            "`{**}` must be the last operator",
            "spec.rules[0].to[0].operation.paths[0]",
            10,
        ),
        (
            "service account with a wildcard",
            spec("  rules:\n  - from:\n    - source:\n        serviceAccounts: [\"ns/*\"]\n"),
            "invalid service account `ns/*`",
            "spec.rules[0].from[0].source.serviceAccounts[0]",
            10,
        ),
        (
            "selector and targetRefs together",
            spec("  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, name: g}]\n"),
            "only one of `selector` or `targetRefs`",
            "spec.selector",
            7,
        ),
        (
            "a list where a mapping is expected",
            spec("  rules:\n  - to: [[GET]]\n"),
            "expected a mapping",
            "spec.rules[0].to[0]",
            8,
        ),
    ];
    let mut failures = Vec::new();
    for (name, yaml, message, path, line) in rows {
        let err = match load(&[SourceFile::new("bad.yaml", yaml.as_str())]) {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let d = &err.diagnostics[0];
        let loc = d.location.as_ref().unwrap();
        if !d.message.contains(message)
            || d.path.as_deref() != Some(*path)
            || loc.line != *line
            || loc.file != "bad.yaml"
        {
            failures.push(format!(
                "{name}: got `{}` at {:?} line {} (want `{message}` at {path} line {line})",
                d.message, d.path, loc.line
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_document_is_reported_and_good_ones_are_not() {
    let text = format!(
        "{}---\n{}---\n{}",
        spec("  rules:\n  - from:\n    - source: {principals: [\"a*b\"]}\n"),
        spec("  rules: [{}]\n"),
        spec("  action: DENY\n")
    );
    let err = load(&[SourceFile::new("many.yaml", text)]).unwrap_err();
    assert_eq!(err.diagnostics.len(), 2, "{err}");
    assert_eq!(err.diagnostics[0].location.as_ref().unwrap().line, 9);
    assert_eq!(
        err.diagnostics[1].document.as_deref(),
        Some("AuthorizationPolicy shop/p")
    );
}

#[test]
fn inputs_that_are_not_policies_are_refused() {
    let rows: &[(&str, &str, &str)] = &[
        ("not YAML", "a: [1, 2\n", "invalid YAML"),
        (
            "unknown kind",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
            "unsupported document kind `Pod`",
        ),
        (
            "old apiVersion",
            "apiVersion: rbac.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n",
            "unsupported apiVersion",
        ),
        (
            "missing kind",
            "apiVersion: v1\n",
            "missing required field `kind`",
        ),
        (
            "missing name",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: a}\n",
            "missing required field `name`",
        ),
        ("a scalar document", "hello\n", "expected a mapping"),
    ];
    for (name, text, message) in rows {
        let err = load(&[SourceFile::new("x.yaml", *text)]).unwrap_err();
        assert!(
            err.diagnostics[0].message.contains(message),
            "{name}: {}",
            err.diagnostics[0].message
        );
    }
}

#[test]
fn v1beta1_kubernetes_metadata_and_lists_are_accepted() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1beta1\n  kind: AuthorizationPolicy\n  metadata:\n    name: a\n    namespace: shop\n    uid: 1234\n    resourceVersion: \"7\"\n    labels: {team: x}\n  spec:\n    rules: [{}]\n  status: {}\n";
    let set = load(&[SourceFile::new("list.yaml", text)]).unwrap();
    assert_eq!(set.authorization.len(), 1);
    assert_eq!(set.authorization[0].namespace, "shop");
}

#[test]
fn bundles_round_trip_and_refuse_corruption() {
    let yaml = spec("  rules:\n  - to: [{operation: {paths: [\"/a\"]}}]\n");
    let set = load(&[SourceFile::new("p.yaml", yaml)]).unwrap();
    let engine = compile(&set, &Options::default()).unwrap();
    let bytes = encode_bundle(&engine).unwrap();
    assert_eq!(&bytes[..4], b"PLSD");
    let back = decode_bundle(&bytes).unwrap();
    assert_eq!(back, engine, "decoding gives the same engine");

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        decode_bundle(&flipped).unwrap_err().to_string(),
        "corrupt bundle: payload digest mismatch"
    );
    let mut version = bytes.clone();
    version[4] = 9;
    assert!(
        decode_bundle(&version)
            .unwrap_err()
            .to_string()
            .contains("unsupported bundle format version 9")
    );
    assert!(decode_bundle(b"PLS").is_err());
    assert!(decode_bundle(b"not a bundle at all, but long enough to have a header....").is_err());
}

#[test]
fn network_policy_finds_the_source_by_its_spiffe_identity() {
    let text = "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {name: i}\nspec:\n  workloads:\n  - {name: web, namespace: shop, serviceAccount: web, labels: {app: web}}\n  - {name: db, namespace: data, serviceAccount: db, labels: {app: db}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: data}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}\n      podSelector: {matchLabels: {app: web}}\n";
    let engine = compile(
        &load(&[SourceFile::new("n.yaml", text)]).unwrap(),
        &Options::default(),
    )
    .unwrap();
    let req = |principal: &str| -> palisade_engine::Request {
        serde_json::from_value(serde_json::json!({
            "protocol": "tcp",
            "source": {"principal": principal},
            "destination": {"port": 5432, "workload": {"namespace": "data", "name": "db"}}
        }))
        .unwrap()
    };
    let d = engine.decide(&req("spiffe://cluster.local/ns/shop/sa/web"));
    assert!(d.allowed(), "{}", d.explain());
    let d = engine.decide(&req("spiffe://cluster.local/ns/data/sa/db"));
    assert!(!d.allowed(), "{}", d.explain());
    let d = engine.decide(&req("spiffe://cluster.local/ns/shop/sa/nobody"));
    assert_eq!(
        d.step,
        palisade_engine::Step::Error,
        "unknown identity fails closed"
    );
}
