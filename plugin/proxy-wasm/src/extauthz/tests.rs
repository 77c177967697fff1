#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use palisade_engine::extauthz::GrpcProvider;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn http() -> HttpProvider {
    HttpProvider {
        service: "foo/ext-authz.foo.svc.cluster.local".into(),
        port: 8000,
        path_prefix: "/check".into(),
        include_request_headers_in_check: vec!["x-ext-authz".into(), "x-prefix-*".into()],
        headers_to_upstream_on_allow: vec!["x-ext-authz-check-result".into()],
        headers_to_downstream_on_deny: vec!["x-ext-authz-check-result".into()],
        ..HttpProvider::default()
    }
}

fn with_http(h: HttpProvider) -> ExtensionProvider {
    ExtensionProvider {
        name: "authz".into(),
        envoy_ext_authz_http: Some(h),
        envoy_ext_authz_grpc: None,
    }
}

fn grpc(fail_open: bool, status_on_error: Option<&str>) -> ExtensionProvider {
    ExtensionProvider {
        name: "authz".into(),
        envoy_ext_authz_http: None,
        envoy_ext_authz_grpc: Some(GrpcProvider {
            service: "ext-authz.foo.svc.cluster.local".into(),
            port: 9000,
            fail_open,
            status_on_error: status_on_error.map(String::from),
            ..GrpcProvider::default()
        }),
    }
}

#[test]
fn the_http_check_carries_method_prefixed_path_authority_and_the_included_headers_only() {
    let request = pairs(&[
        (":method", "POST"),
        (":path", "/api/items?x=1"),
        (":authority", "cart"),
        (":scheme", "http"),
        ("x-ext-authz", "allow"),
        ("X-Prefix-Id", "7"),
        ("x-ext-authz", "deny"),
        ("authorization", "Bearer t"),
        ("cookie", "secret"),
        ("content-length", "12"),
    ]);
    let got = http_check_headers(&http(), &request);
    assert_eq!(
        got,
        pairs(&[
            (":method", "POST"),
            (":path", "/check/api/items?x=1"),
            (":authority", "cart"),
            ("x-ext-authz", "allow,deny"),
            ("x-prefix-id", "7"),
            ("authorization", "Bearer t"),
            ("content-length", "0"),
        ]),
        "adversarial: a repeated header is sent once, its values joined (the provider cannot pick one)"
    );
    let mut bare = http();
    bare.path_prefix = String::new();
    bare.include_request_headers_in_check.clear();
    let got = http_check_headers(&bare, &request);
    assert_eq!(
        got,
        pairs(&[
            (":method", "POST"),
            (":path", "/api/items?x=1"),
            (":authority", "cart"),
            ("authorization", "Bearer t"),
            ("content-length", "0"),
        ]),
        "adversarial: without includeRequestHeadersInCheck the provider never sees x-ext-authz"
    );
}

#[test]
fn http_answers_follow_envoys_raw_http_client() {
    let h = http();
    let answer_headers = pairs(&[
        (":status", "403"),
        ("x-ext-authz-check-result", "denied"),
        ("set-cookie", "a=b"),
        ("content-length", "5"),
        ("www-authenticate", "Basic"),
    ]);
    let cases: Vec<(&str, Option<u32>, Answer)> = vec![
        (
            "200 allows with the headers headersToUpstreamOnAllow names",
            Some(200),
            Answer::Allow(pairs(&[("x-ext-authz-check-result", "denied")])),
        ),
        (
            "403 denies with the answer's status, body and listed headers (and www-authenticate)",
            Some(403),
            Answer::Deny(Reply {
                status: 403,
                headers: pairs(&[
                    ("x-ext-authz-check-result", "denied"),
                    ("www-authenticate", "Basic"),
                ]),
                body: b"nope".to_vec(),
                details: DETAILS_DENIED,
            }),
        ),
        (
            "a 2xx other than 200 denies, as Envoy's HTTP client only allows 200",
            Some(204),
            Answer::Deny(Reply {
                status: 204,
                headers: pairs(&[
                    ("x-ext-authz-check-result", "denied"),
                    ("www-authenticate", "Basic"),
                ]),
                body: b"nope".to_vec(),
                details: DETAILS_DENIED,
            }),
        ),
        (
            "a 503 (an unreachable provider) is an error",
            Some(503),
            Answer::Error {
                timeout: false,
                reason: "the provider answered 503".into(),
            },
        ),
        (
            "a 504 (the async client's timeout) is a timeout",
            Some(504),
            Answer::Error {
                timeout: true,
                reason: "the provider answered 504".into(),
            },
        ),
        (
            "no status at all is an error",
            None,
            Answer::Error {
                timeout: false,
                reason: "the provider's answer has no status".into(),
            },
        ),
    ];
    for (name, status, want) in cases {
        assert_eq!(
            http_answer(&h, status, &answer_headers, b"nope", false),
            want,
            "{name}"
        );
    }
    let mut all = http();
    all.headers_to_downstream_on_deny.clear();
    let with_host = pairs(&[("host", "x"), ("set-cookie", "a=b")]);
    assert_eq!(
        http_answer(&all, Some(401), &with_host, b"", false),
        Answer::Deny(Reply {
            status: 401,
            headers: pairs(&[("set-cookie", "a=b")]),
            body: Vec::new(),
            details: DETAILS_DENIED,
        }),
        "without headersToDownstreamOnDeny every header but host goes to the client"
    );
}

#[test]
fn errors_follow_fail_open_and_status_on_error() {
    let err = || Answer::Error {
        timeout: true,
        reason: "t".into(),
    };
    assert_eq!(
        resolve(&grpc(true, None), err()),
        Resolution {
            answer: ExtAuthzAnswer::Allow,
            upstream_headers: vec![],
            reply: None
        },
        "failOpen allows"
    );
    assert_eq!(
        resolve(&grpc(false, None), err()).reply.unwrap(),
        Reply {
            status: 403,
            headers: vec![],
            body: vec![],
            details: DETAILS_ERROR
        },
        "closed with Envoy's default 403"
    );
    assert_eq!(
        resolve(&grpc(false, Some("503")), err())
            .reply
            .unwrap()
            .status,
        503,
        "statusOnError"
    );
    let deny = Answer::Deny(Reply {
        status: 401,
        headers: vec![],
        body: vec![],
        details: DETAILS_DENIED,
    });
    assert_eq!(
        resolve(&grpc(true, None), deny).answer,
        ExtAuthzAnswer::Deny,
        "adversarial: failOpen never turns a real denial into an allow"
    );
}

fn check_response(
    code: i32,
    denied: Option<pb::DeniedHttpResponse>,
    ok: Option<pb::OkHttpResponse>,
) -> Vec<u8> {
    pb::CheckResponse {
        status: Some(pb::RpcStatus {
            code,
            message: String::new(),
        }),
        denied_response: denied,
        ok_response: ok,
    }
    .encode_to_vec()
}

fn header(k: &str, v: &str) -> pb::HeaderValueOption {
    pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: vec![],
        }),
    }
}

#[test]
fn grpc_answers_follow_envoys_grpc_client() {
    let ok = check_response(
        0,
        None,
        Some(pb::OkHttpResponse {
            headers: vec![header("x-ext-authz-check-result", "allowed")],
        }),
    );
    assert_eq!(
        grpc_answer(0, &ok),
        Answer::Allow(pairs(&[("x-ext-authz-check-result", "allowed")]))
    );
    // Istio's sample denies with PERMISSION_DENIED (7) and a 403 denied_response.
    let denied = check_response(
        7,
        Some(pb::DeniedHttpResponse {
            status: Some(pb::HttpStatus { code: 403 }),
            headers: vec![header("x-ext-authz-check-result", "denied")],
            body: "denied by ext_authz".into(),
        }),
        None,
    );
    assert_eq!(
        grpc_answer(0, &denied),
        Answer::Deny(Reply {
            status: 403,
            headers: pairs(&[("x-ext-authz-check-result", "denied")]),
            body: b"denied by ext_authz".to_vec(),
            details: DETAILS_DENIED,
        })
    );
    let bare_denied = check_response(16, None, None);
    assert_eq!(
        grpc_answer(0, &bare_denied),
        Answer::Deny(Reply {
            status: 403,
            headers: vec![],
            body: vec![],
            details: DETAILS_DENIED
        }),
        "a non-OK status without denied_response is a 403"
    );
    assert_eq!(
        grpc_answer(4, b""),
        Answer::Error {
            timeout: true,
            reason: "the Check call failed with gRPC status 4".into()
        }
    );
    assert_eq!(
        grpc_answer(14, b""),
        Answer::Error {
            timeout: false,
            reason: "the Check call failed with gRPC status 14".into()
        }
    );
    assert!(
        matches!(
            grpc_answer(0, &[0xff, 0xff]),
            Answer::Error { timeout: false, .. }
        ),
        "garbage is an error"
    );
}

#[test]
fn the_check_request_decodes_as_envoys_message_with_joined_repeated_headers() {
    let attrs = CheckAttributes {
        source: Some(("10.0.0.9".into(), 40000)),
        source_principal: "spiffe://cluster.local/ns/x/sa/a".into(),
        destination: Some(("10.0.1.1".into(), 8080)),
        http: Some(HttpCheck {
            id: "r1".into(),
            method: "GET".into(),
            path: "/p?q".into(),
            host: "cart".into(),
            scheme: "http".into(),
            protocol: "HTTP/1.1".into(),
            headers: pairs(&[(":method", "GET"), ("X-A", "1"), ("x-a", "2")]),
        }),
    };
    let bytes = grpc_check_request(&attrs);
    let back = pb::CheckRequest::decode(bytes.as_slice()).unwrap();
    let a = back.attributes.unwrap();
    let src = a.source.unwrap();
    assert_eq!(src.principal, "spiffe://cluster.local/ns/x/sa/a");
    let sa = src.address.unwrap().socket_address.unwrap();
    assert_eq!((sa.address.as_str(), sa.port_value), ("10.0.0.9", 40000));
    let http = a.request.unwrap().http.unwrap();
    assert_eq!(http.headers.get("x-a").map(String::as_str), Some("1,2"));
    assert_eq!(http.headers.get(":method").map(String::as_str), Some("GET"));
    assert_eq!((http.path.as_str(), http.host.as_str()), ("/p?q", "cart"));
    let tcp = CheckAttributes {
        http: None,
        ..attrs
    };
    let back = pb::CheckRequest::decode(grpc_check_request(&tcp).as_slice()).unwrap();
    assert!(
        back.attributes.unwrap().request.is_none(),
        "TCP checks carry no request"
    );
}

#[test]
fn the_grpc_service_names_istios_cluster_and_authority() {
    let s = pb::GrpcService::decode(grpc_service(&grpc(false, None)).as_slice()).unwrap();
    let e = s.envoy_grpc.unwrap();
    assert_eq!(
        e.cluster_name,
        "outbound|9000||ext-authz.foo.svc.cluster.local"
    );
    assert_eq!(
        e.authority,
        "outbound_.9000_._.ext-authz.foo.svc.cluster.local"
    );
    let _ = with_http(http());
}
