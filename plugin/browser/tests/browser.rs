//! The simulator page in a real browser: headless Chromium loads `plugin/browser/www` (the
//! `wasm-bindgen --target web` build that `cargo xtask simulator` writes to `www/pkg/`) from a
//! loopback HTTP server, evaluates every shop sample request (`index.html#evaluate-all`) and
//! checks the policies (`#check`); the page's DOM must show, for every sample, the verdict,
//! deciding rule, step and explanation the native simulator gives for the same text.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// The page's build, or a failure that says how to make it.
fn built_page() {
    for f in [
        "pkg/palisade_simulator_bg.wasm",
        "pkg/palisade_simulator.js",
        "pkg/shop.json",
    ] {
        assert!(
            www().join(f).is_file(),
            "plugin/browser/www/{f} is missing: build it with `cargo xtask simulator` (`cargo xtask test` does)"
        );
    }
}

/// Chromium: `$CHROMIUM`, else the first of the usual names that runs.
fn chromium() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("CHROMIUM") {
        Some(p) => vec![PathBuf::from(p)],
        None => ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    candidates
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no Chromium found: install Debian's `chromium` (`cargo xtask setup` does) or set $CHROMIUM")
}

/// Serves `www()` on a loopback port until the test process ends; returns the port.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut stream: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let rel = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    let file = www().join(rel);
    let inside = !rel.split('/').any(|s| s == "..");
    let (status, body, kind) = match std::fs::read(&file) {
        Ok(body) if inside => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            ("200 OK", body, kind)
        }
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The page's DOM after it ran `hash` (with an optional query before it: `?k=v#hash`), as
/// headless Chromium dumps it.
fn dom(port: u16, hash: &str) -> String {
    let hash = if hash.starts_with('?') {
        hash.to_string()
    } else {
        format!("#{hash}")
    };
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{port}/index.html{hash}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the first `<dd>` after `<dt>{term}</dt>` in `html`.
fn term<'a>(html: &'a str, term: &str) -> Option<&'a str> {
    let start = html.find(&format!("<dt>{term}</dt><dd>"))? + term.len() + 13;
    let rest = html.get(start..)?;
    rest.get(..rest.find("</dd>")?)
}

/// The page's built shop example (`pkg/shop.json`: the policies text and the samples).
fn shop() -> Value {
    built_page();
    serde_json::from_str(&std::fs::read_to_string(www().join("pkg/shop.json")).unwrap()).unwrap()
}

#[test]
fn the_page_decides_every_shop_sample_as_the_native_simulator_does() {
    let shop = shop();
    let policies = shop["policies"].as_str().unwrap();
    let requests = shop["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 12);
    let port = serve();

    let html = dom(port, "evaluate-all");
    let shown: Vec<&str> = html.split("<div class=\"verdict ").skip(1).collect();
    assert_eq!(
        shown.len(),
        requests.len(),
        "the page shows one result per sample:\n{html}"
    );
    for (sample, shown) in requests.iter().zip(&shown) {
        let text = sample["text"].as_str().unwrap();
        let native = palisade_simulator::evaluate(policies, text).unwrap();
        let r = &native.results[0];
        let name = r.name.clone().unwrap();
        let verdict = r.decision.verdict.to_string();
        assert!(
            shown.starts_with(&format!("{verdict}\">{name}: {verdict}</div>")),
            "{name}: the page shows {}",
            &shown[..shown.len().min(200)]
        );
        let rule = r.decision.rule.as_ref().map_or("(none)", |r| r.id.as_str());
        assert_eq!(
            term(shown, "rule").map(unescape).as_deref(),
            Some(rule),
            "{name}"
        );
        let step = palisade_engine::labelled::step_name(r.decision.step);
        assert_eq!(term(shown, "step"), Some(step.as_str()), "{name}");
        assert_eq!(
            term(shown, "why").map(unescape).as_deref(),
            Some(r.explanation.as_str()),
            "{name}"
        );
        assert_eq!(
            term(shown, "expected").map(|e| e.ends_with(": met")),
            Some(true),
            "{name}: its expectation"
        );
    }

    let html = dom(port, "check");
    let summary = palisade_simulator::check(policies).summary.unwrap();
    let expected = format!(
        "valid: {} AuthorizationPolicies (ALLOW {}, DENY {}, AUDIT {}; {} dry-run; {} rules), {} RequestAuthentications, {} NetworkPolicies",
        summary.authorization_policies,
        summary.allow,
        summary.deny,
        summary.audit,
        summary.dry_run,
        summary.rules,
        summary.request_authentications,
        summary.network_policies
    );
    assert!(
        html.contains(&expected),
        "expected `{expected}` in:\n{html}"
    );
}

/// The verdict the page shows for each sample, in order.
fn verdicts(html: &str) -> Vec<String> {
    html.split("<div class=\"verdict ")
        .skip(1)
        .map(|d| d.split('"').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_page_passes_its_mesh_options_to_the_engine() {
    let shop = shop();
    let policies = shop["policies"].as_str().unwrap();
    let requests = shop["requests"].as_array().unwrap();
    let port = serve();

    // Options from the query reach the engine: valid ones decide as the native simulator does
    // with them (`elsewhere` changes no shop sample; `shop` below changes one), and ones that
    // do not read are refused below.
    let options = r#"{"rootNamespace": "elsewhere"}"#;
    let shown = verdicts(&dom(port, "?rootNamespace=elsewhere#evaluate-all"));
    assert_eq!(shown.len(), requests.len());
    for (sample, shown) in requests.iter().zip(&shown) {
        let text = sample["text"].as_str().unwrap();
        let with = palisade_simulator::evaluate_with(policies, text, options).unwrap();
        assert_eq!(
            shown,
            &with.results[0].decision.verdict.to_string(),
            "{text}"
        );
    }

    // An option that changes a sample's decision (hand-written expectation, as in
    // `src/tests.rs`): with `rootNamespace=shop`, `shop/deny-plaintext` applies mesh-wide and
    // the page shows `browse-home` denied; every other sample as with the defaults.
    let default = verdicts(&dom(port, "evaluate-all"));
    let moved = verdicts(&dom(port, "?rootNamespace=shop#evaluate-all"));
    assert_eq!(
        (default.len(), moved.len()),
        (requests.len(), requests.len())
    );
    let changed: Vec<(String, &str, &str)> = requests
        .iter()
        .zip(default.iter().zip(&moved))
        .filter(|(_, (d, m))| d != m)
        .map(|(r, (d, m))| {
            let name = serde_json::from_str::<Value>(r["text"].as_str().unwrap()).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string();
            (name, d.as_str(), m.as_str())
        })
        .collect();
    assert_eq!(
        changed,
        [("browse-home".to_string(), "allow", "deny")],
        "samples whose verdict rootNamespace=shop changes"
    );

    // Options that do not read are shown as an error of `options.json`.
    let html = dom(port, "?pathNormalization=SOMETIMES#check");
    assert!(
        html.contains("The policies are invalid:") && html.contains("options.json"),
        "{html}"
    );
}
