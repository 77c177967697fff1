//! The host against small hand-written guests (WAT): every callback it drives, the host
//! functions they call, and a guest that traps or never returns — reported as a trap, and
//! the request refused (fail closed), never a host panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_wasm_host::{
    Action, Bound, ConfigRefused, HostSettings, HttpFixture, LogLevel, ProxyWasmHost, StreamInput,
    TrapKind,
};

/// A guest: allow unless the request has an `x-deny` header (then a 403 local reply), log
/// `source.address`, count requests, record the configuration in shared data, refuse the
/// configuration `refuse`, close TCP connections on their first data, call out to `authz`
/// when the request has `x-call`. `$headers` replaces the body of `proxy_on_request_headers`.
fn guest(headers: &str) -> Vec<u8> {
    let wat = r#"
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 100) "source\00address")
  (data (i32.const 120) "x-deny")
  (data (i32.const 130) "denied by wat")
  (data (i32.const 150) "requests")
  (data (i32.const 160) "config")
  (data (i32.const 170) "x-seen")
  (data (i32.const 180) "yes")
  (data (i32.const 300) "x-call")
  (data (i32.const 310) "authz")
  (data (i32.const 400) "called back\n")
  (data (i32.const 420) "\0c\00\00\00")
  (data (i32.const 500) "\03\00\00\00\07\00\00\00\04\00\00\00\05\00\00\00\01\00\00\00\0a\00\00\00\05\00\00\00:method\00POST\00:path\00/\00:authority\00authz\00")
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "_initialize"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 200) (i32.const 204)))
    (if (i32.and (i32.eq (local.get $size) (i32.const 6))
                 (i32.eq (i32.load8_u (i32.load (i32.const 200))) (i32.const 114)))
      (then (return (i32.const 0))))
    (drop (call $set_shared (i32.const 160) (i32.const 6) (i32.load (i32.const 200)) (i32.load (i32.const 204)) (i32.const 0)))
    (drop (call $define (i32.const 0) (i32.const 150) (i32.const 8) (i32.const 208)))
    (drop (call $tick (i32.const 1000)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    HEADERS)
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (i32.store (i32.const 416) (i32.const 400))
    (drop (call $fd_write (i32.const 1) (i32.const 416) (i32.const 1) (i32.const 212)))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (drop (call $close (i32.const 2)))
    (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)"#;
    wat::parse_str(wat.replace("HEADERS", headers)).unwrap()
}

const DECIDE: &str = r#"
    (drop (call $inc (i32.load (i32.const 208)) (i64.const 1)))
    (if (i32.eqz (call $get_property (i32.const 100) (i32.const 14) (i32.const 200) (i32.const 204)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 200)) (i32.load (i32.const 204))))))
    (drop (call $add_header (i32.const 0) (i32.const 170) (i32.const 6) (i32.const 180) (i32.const 3)))
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 300) (i32.const 6) (i32.const 200) (i32.const 204)))
      (then
        (drop (call $call (i32.const 310) (i32.const 5) (i32.const 500) (i32.const 66)
                          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 212)))
        (return (i32.const 1))))
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 120) (i32.const 6) (i32.const 200) (i32.const 204)))
      (then
        (drop (call $reply (i32.const 403) (i32.const 130) (i32.const 13) (i32.const 130) (i32.const 6)
                           (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0)"#;

fn request(json: serde_json::Value) -> palisade_engine::Request {
    serde_json::from_value(json).unwrap()
}

fn settings() -> HostSettings {
    let mut s = HostSettings::default();
    s.http_fixtures.insert(
        "authz".into(),
        HttpFixture {
            headers: vec![(":status".into(), "200".into())],
            ..HttpFixture::default()
        },
    );
    s
}

#[test]
fn a_request_without_the_deny_header_continues_and_is_logged_and_counted() {
    let host = ProxyWasmHost::with_settings(&guest(DECIDE), settings()).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.http(&request(serde_json::json!({
        "source": {"ip": "10.0.0.7", "port": 4000},
        "http": {"method": "GET", "path": "/"},
    })));
    assert!(o.allowed, "{o:?}");
    assert_eq!(o.action, Some(Action::Continue));
    assert_eq!(o.status, None);
    assert_eq!(o.logs.len(), 1);
    assert_eq!(o.logs[0].message, "10.0.0.7:4000");
    assert_eq!(o.logs[0].level, LogLevel::Info);
    assert!(o.request_headers.contains(&("x-seen".into(), "yes".into())));
    assert_eq!(vm.metrics().get("requests"), Some(&1));
    assert_eq!(vm.tick_period_ms(), 1000);
    assert_eq!(vm.shared_data().get(&b"config"[..]).unwrap().0, b"{}");
}

#[test]
fn a_local_reply_denies_and_is_captured() {
    let host = ProxyWasmHost::with_settings(&guest(DECIDE), settings()).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.http(&request(serde_json::json!({
        "http": {"method": "GET", "path": "/", "headers": {"x-deny": "1"}},
    })));
    assert!(!o.allowed);
    assert_eq!(o.status, Some(403));
    assert_eq!(o.details.as_deref(), Some("denied by wat"));
    assert_eq!(o.body, b"denied");
    assert_eq!(o.action, Some(Action::Pause));
    assert_eq!(vm.metrics().get("requests"), Some(&1));
}

#[test]
fn an_http_callout_is_answered_from_the_fixture_and_the_stream_resumes() {
    let host = ProxyWasmHost::with_settings(&guest(DECIDE), settings()).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.http(&request(serde_json::json!({
        "http": {"method": "GET", "path": "/", "headers": {"x-call": "1"}},
    })));
    assert_eq!(o.http_calls.len(), 1, "{o:?}");
    assert_eq!(o.http_calls[0].upstream, "authz");
    assert_eq!(o.action, Some(Action::Pause));
    assert!(o.allowed, "continued from the callout response: {o:?}");
    assert!(
        o.logs.iter().any(|l| l.message == "called back"),
        "stdout becomes a log line: {:?}",
        o.logs
    );
}

#[test]
fn a_configuration_the_guest_refuses_is_a_refusal() {
    let host = ProxyWasmHost::new(&guest(DECIDE)).unwrap();
    match host.configure("refuse") {
        Err(ConfigRefused::Refused { callback, .. }) => assert_eq!(callback, "proxy_on_configure"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_tcp_connection_the_guest_closes_is_denied() {
    let host = ProxyWasmHost::new(&guest(DECIDE)).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.tcp(&request(serde_json::json!({"protocol": "tcp"})));
    assert!(!o.allowed);
    assert!(o.closed);
    assert!(o.trap.is_none());
}

#[test]
fn a_guest_that_traps_is_reported_and_fails_closed_from_then_on() {
    let host = ProxyWasmHost::new(&guest("(unreachable)")).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.http_stream(StreamInput::default());
    let trap = o.trap.clone().expect("a trap");
    assert_eq!(trap.kind, TrapKind::Wasm);
    assert_eq!(trap.callback, "proxy_on_request_headers");
    assert!(!o.allowed);
    assert_eq!(o.status, Some(503));
    let again = vm.http_stream(StreamInput::default());
    assert!(!again.allowed && again.trap.is_some(), "the VM stays dead");
    let tcp = vm.tcp_stream(StreamInput::default());
    assert!(!tcp.allowed && tcp.closed);
}

#[test]
fn a_guest_that_never_returns_runs_out_of_fuel_and_fails_closed() {
    let settings = HostSettings {
        callback_fuel: 5_000_000,
        ..HostSettings::default()
    };
    let host =
        ProxyWasmHost::with_settings(&guest("(loop $l (br $l)) (i32.const 0)"), settings).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let o = vm.http_stream(StreamInput::default());
    assert_eq!(o.trap.map(|t| t.kind), Some(TrapKind::OutOfFuel));
    assert!(!o.allowed);
}

#[test]
fn a_guest_that_never_returns_is_interrupted_by_its_time_budget_and_fails_closed() {
    let settings = HostSettings {
        bound: Bound::Time {
            configure_ms: 10_000,
            callback_ms: 50,
        },
        ..HostSettings::default()
    };
    let host =
        ProxyWasmHost::with_settings(&guest("(loop $l (br $l)) (i32.const 0)"), settings).unwrap();
    let mut vm = host.configure("{}").unwrap();
    let started = std::time::Instant::now();
    let o = vm.http_stream(StreamInput::default());
    assert_eq!(o.trap.map(|t| t.kind), Some(TrapKind::Interrupted));
    assert!(!o.allowed);
    assert_eq!(o.status, Some(503));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "interrupted after {:?}",
        started.elapsed()
    );
    let again = vm.http_stream(StreamInput::default());
    assert!(!again.allowed && again.trap.is_some(), "the VM stays dead");
}

#[test]
fn a_guest_that_exits_traps_instead_of_taking_the_host_down() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (import "env" "proxy_unknown_call" (func $unknown))
      (memory (export "memory") 1)
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "_initialize") (call $exit (i32.const 3))))"#;
    let host = ProxyWasmHost::new(&wat::parse_str(wat).unwrap()).unwrap();
    match host.configure("{}") {
        Err(ConfigRefused::Trap { trap, .. }) => {
            assert_eq!(trap.kind, TrapKind::Host);
            assert!(trap.message.contains("proc_exit(3)"), "{}", trap.message);
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_module_without_memory_or_allocator_does_not_link() {
    let wat = wat::parse_str("(module)").unwrap();
    assert!(ProxyWasmHost::new(&wat).is_err());
    assert!(ProxyWasmHost::new(b"not wasm").is_err());
}
