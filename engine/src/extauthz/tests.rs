#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

fn http(service: &str, port: u32) -> ExtensionProvider {
    ExtensionProvider {
        name: "authz".into(),
        envoy_ext_authz_http: Some(HttpProvider {
            service: service.into(),
            port,
            ..HttpProvider::default()
        }),
        envoy_ext_authz_grpc: None,
    }
}

#[test]
fn providers_are_validated_as_istio_validates_them() {
    let with_http = |f: &dyn Fn(&mut HttpProvider)| {
        let mut p = http("foo/authz.foo.svc.cluster.local", 9000);
        f(p.envoy_ext_authz_http.as_mut().unwrap());
        p.validate()
    };
    // (name of the case, the result's error text or None when valid)
    let cases: Vec<(&str, Result<(), String>, Option<&str>)> = vec![
        (
            "a complete HTTP provider is valid",
            with_http(&|_| {}),
            None,
        ),
        (
            "port 0 is refused",
            with_http(&|h| h.port = 0),
            Some("port must be in the range [1, 65535], found: 0"),
        ),
        (
            "port 65536 is refused",
            with_http(&|h| h.port = 65536),
            Some("port must be in the range [1, 65535], found: 65536"),
        ),
        (
            "an empty service is refused",
            with_http(&|h| h.service = String::new()),
            Some("service must be"),
        ),
        (
            "a service with two slashes is refused",
            with_http(&|h| h.service = "a/b/c".into()),
            Some("service must be"),
        ),
        (
            "a pathPrefix without a leading slash is refused",
            with_http(&|h| h.path_prefix = "check".into()),
            Some("pathPrefix must begin with `/`"),
        ),
        (
            "statusOnError 999 is refused",
            with_http(&|h| h.status_on_error = Some("999".into())),
            Some("unsupported statusOnError `999`"),
        ),
        (
            "statusOnError 0 (Envoy's Empty) is refused",
            with_http(&|h| h.status_on_error = Some("0".into())),
            Some("unsupported statusOnError `0`"),
        ),
        (
            "statusOnError 503 is accepted",
            with_http(&|h| h.status_on_error = Some("503".into())),
            None,
        ),
        (
            "a lone wildcard in includeRequestHeadersInCheck is refused",
            with_http(&|h| h.include_request_headers_in_check = vec!["*".into()]),
            Some("a single wildcard"),
        ),
        (
            "a prefix wildcard header pattern is accepted",
            with_http(&|h| h.headers_to_upstream_on_allow = vec!["x-auth-*".into()]),
            None,
        ),
        (
            "a timeout without a unit is refused",
            with_http(&|h| h.timeout = Some("10".into())),
            Some("invalid timeout `10`"),
        ),
    ];
    for (name, got, want) in cases {
        match (got, want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.contains(w), "{name}: `{e}` lacks `{w}`"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_provider_needs_exactly_one_api_and_a_unique_name() {
    let mut both = http("authz", 80);
    both.envoy_ext_authz_grpc = Some(GrpcProvider {
        service: "authz".into(),
        port: 80,
        ..GrpcProvider::default()
    });
    assert!(both.validate().unwrap_err().contains("exactly one"));
    let mut none = http("authz", 80);
    none.envoy_ext_authz_http = None;
    assert!(none.validate().unwrap_err().contains("exactly one"));
    let mut unnamed = http("authz", 80);
    unnamed.name = String::new();
    assert_eq!(
        unnamed.validate().unwrap_err(),
        "extension provider name must not be empty"
    );
    let twice = vec![http("a", 80), http("b", 81)];
    assert_eq!(
        validate_all(&twice).unwrap_err(),
        "extension provider name must be unique, found duplicate: `authz`"
    );
}

#[test]
fn the_cluster_is_named_as_istio_names_it() {
    // Istio's golden file custom-http-provider-out2.yaml: service
    // `foo/my-custom-ext-authz.foo.svc.cluster.local`, port 9000.
    let p = http("foo/my-custom-ext-authz.foo.svc.cluster.local", 9000);
    assert_eq!(
        p.cluster(),
        "outbound|9000||my-custom-ext-authz.foo.svc.cluster.local"
    );
    assert_eq!(p.hostname(), "my-custom-ext-authz.foo.svc.cluster.local");
    let bare = http("authz.local", 8000);
    assert_eq!(bare.cluster(), "outbound|8000||authz.local");
}

#[test]
fn defaults_are_istios() {
    let p = http("authz", 80);
    assert_eq!(p.timeout_ms(), 600_000);
    assert_eq!(p.status_on_error(), 403);
    assert!(!p.fail_open());
}

#[test]
fn durations_read_as_protobuf_json_durations() {
    let cases = [
        ("10s", Some(10_000)),
        ("0.002s", Some(2)),
        ("1.5s", Some(1_500)),
        ("0.0001s", Some(1)),
        (".5s", Some(500)),
        ("0s", Some(0)),
        ("10", None),
        ("s", None),
        ("-1s", None),
        ("1ms", None),
        ("1.0000000001s", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration_ms(text), want, "{text}");
    }
}

#[test]
fn header_patterns_match_as_envoys_ignore_case_string_matchers() {
    let cases = [
        ("x-custom-id", "X-Custom-Id", true),
        ("x-custom-id", "x-custom-idx", false),
        ("x-prefix-*", "x-prefix-a", true),
        ("x-prefix-*", "x-prefi", false),
        ("*-suffix", "a-SUFFIX", true),
        ("*-suffix", "suffix", false),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(
            header_pattern_matches(pattern, name),
            want,
            "{pattern} {name}"
        );
    }
}

#[test]
fn mesh_config_yaml_reads_with_positions_and_skips_other_provider_kinds() {
    let text = r#"
rootNamespace: istio-system
extensionProviders:
- name: tracing
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: ext-authz-http
  envoyExtAuthzHttp:
    service: foo/ext-authz.foo.svc.cluster.local
    port: "8000"
    pathPrefix: /check
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
    timeout: 0.5s
    failOpen: true
    statusOnError: "503"
- name: ext-authz-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
"#;
    let got = read_mesh_config(&SourceFile::new("mesh.yaml", text)).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].name, "ext-authz-http");
    let h = got[0].envoy_ext_authz_http.as_ref().unwrap();
    assert_eq!(h.port, 8000);
    assert_eq!(h.path_prefix, "/check");
    assert_eq!(got[0].timeout_ms(), 500);
    assert_eq!(got[0].status_on_error(), 503);
    assert!(got[0].fail_open());
    assert!(got[1].is_grpc());
    assert_eq!(
        got[1].cluster(),
        "outbound|9000||ext-authz.foo.svc.cluster.local"
    );

    let bad = "extensionProviders:\n- name: x\n  envoyExtAuthzHttp: {service: a, port: 80, pathPrefix: check}\n";
    let e = read_mesh_config(&SourceFile::new("mesh.yaml", bad)).unwrap_err();
    let d = &e.diagnostics[0];
    assert!(
        d.message.contains("pathPrefix must begin with `/`"),
        "{}",
        d.message
    );
    let l = d.location.as_ref().unwrap();
    assert_eq!((l.file.as_str(), l.line), ("mesh.yaml", 2));

    let unknown = "extensionProviders:\n- name: x\n  envoyExtAuthzGrpc: {service: a, port: 80, includeRequestBodyInCheck: {}}\n";
    let e = read_mesh_config(&SourceFile::new("mesh.yaml", unknown)).unwrap_err();
    assert!(
        e.diagnostics[0]
            .message
            .contains("unknown field `includeRequestBodyInCheck`"),
        "{}",
        e.diagnostics[0].message
    );
}
