//! `palisade serve` as a command: it starts from a key made by `palisade keygen`, serves the
//! bundle `palisade compile` would make with the same key and inputs, and a bad flag is
//! refused before anything starts. (The server itself is tested in `serve/tests/serve.rs`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

const POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: [GET]}}]
";

fn palisade(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A plain HTTP/1.1 GET; the whole response as bytes.
fn get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn palisade_serve_serves_what_palisade_compile_writes_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("p")).unwrap();
    std::fs::write(d.join("p/cart.yaml"), POLICY).unwrap();
    assert!(palisade(&["keygen", "-o", "k"], d).status.success());
    let compiled = palisade(
        &[
            "compile", "p", "-o", "b.plsd", "--sign", "k.key", "--key-id", "ci",
        ],
        d,
    );
    assert!(compiled.status.success());
    let expected = std::fs::read(d.join("b.plsd")).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "serve",
            "p",
            "--http",
            "127.0.0.1:0",
            "--sign",
            "k.key",
            "--key-id",
            "ci",
        ])
        .current_dir(d)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let response = get(&addr, "/v1/bundles/mesh");
    child.kill().unwrap();
    child.wait().unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let revision = palisade_engine::bundle::digest_hex(&expected).unwrap();
    assert!(head.contains(&format!("etag: \"{revision}\"")), "{head}");
    assert_eq!(&response[split + 4..], expected.as_slice());
}

#[test]
fn a_malformed_scope_is_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cart.yaml"), POLICY).unwrap();
    let out = palisade(
        &[
            "serve",
            "cart.yaml",
            "--http",
            "127.0.0.1:0",
            "--scope",
            "workload:shop",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`workload:shop` is not a scope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
