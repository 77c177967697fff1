//! The watch against the Kubernetes list-and-watch protocol served on loopback by a small
//! HTTP/1.1 server that replays the exchanges in `testdata/watch` (written from the API
//! documentation, see `testdata/README.md`): `resourceVersion`s, a bookmark, a stream the
//! server closes, `410 Gone` as a watch event and as an HTTP status, relists, and objects
//! deleted while the client was away. No real API server was involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use palisade_sources::Import;
use palisade_sources::watch::Watch;
use serde_json::Value;

/// One request as the server saw it: resource path, whether a watch, the query.
type Asked = (String, bool, BTreeMap<String, String>);

/// The scripted API server: one queue of exchanges per resource path.
struct Server {
    scripts: Mutex<BTreeMap<String, Vec<Value>>>,
    /// What the client asked: resource path, whether a watch, the query.
    log: Mutex<Vec<Asked>>,
    /// Problems the server saw (an unexpected request or query); the test asserts none.
    problems: Mutex<Vec<String>>,
    released: (Mutex<u64>, Condvar),
    stop: AtomicBool,
}

impl Server {
    fn release(&self, n: u64) {
        *self.released.0.lock().unwrap() = n;
        self.released.1.notify_all();
    }

    fn wait_for(&self, n: u64) -> bool {
        let mut r = self.released.0.lock().unwrap();
        while *r < n {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            r = self
                .released
                .1
                .wait_timeout(r, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        true
    }
}

fn script(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/watch")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn serve(server: Arc<Server>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let server = server.clone();
            std::thread::spawn(move || handle(&server, conn));
        }
    });
    format!("http://{addr}")
}

fn handle(server: &Server, mut conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let is_watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    server
        .log
        .lock()
        .unwrap()
        .push((path.to_string(), is_watch, params.clone()));
    let step = {
        let mut scripts = server.scripts.lock().unwrap();
        scripts
            .get_mut(path)
            .and_then(|q| (!q.is_empty()).then(|| q.remove(0)))
    };
    let Some(step) = step else {
        if is_watch {
            // Nothing more to say: keep the watch open, as a quiet cluster does.
            return stream(server, &mut conn, &[], "hold");
        }
        server
            .problems
            .lock()
            .unwrap()
            .push(format!("unscripted request {target}"));
        return reply(&mut conn, 500, "{}");
    };
    if (step["step"] == "watch") != is_watch {
        server.problems.lock().unwrap().push(format!(
            "expected a {} for {path}, got {target}",
            step["step"]
        ));
    }
    for (k, v) in step["expect"].as_object().into_iter().flatten() {
        if params.get(k).map(String::as_str) != v.as_str() {
            server
                .problems
                .lock()
                .unwrap()
                .push(format!("{path}: expected {k}={v}, got {target}"));
        }
    }
    if !server.wait_for(step["release"].as_u64().unwrap()) {
        return;
    }
    if let Some(status) = step["status"].as_u64() {
        return reply(&mut conn, status as u16, &step["body"].to_string());
    }
    let events: Vec<String> = step["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    stream(server, &mut conn, &events, step["then"].as_str().unwrap());
}

fn reply(conn: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        410 => "Gone",
        _ => "Internal Server Error",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A watch response: chunked, one event per line, then closed or held open.
fn stream(server: &Server, conn: &mut TcpStream, events: &[String], then: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for e in events {
        let line = format!("{e}\n");
        let _ = write!(conn, "{:x}\r\n{line}\r\n", line.len());
        let _ = conn.flush();
    }
    if then == "hold" {
        while !server.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = write!(conn, "0\r\n\r\n");
}

/// Workload name -> addresses, and namespace name -> labels.
type State = (
    BTreeMap<String, Vec<IpAddr>>,
    BTreeMap<String, BTreeMap<String, String>>,
);

fn state(i: &Import) -> State {
    (
        i.inventory
            .workloads
            .iter()
            .map(|w| (format!("{}/{}", w.namespace, w.name), w.ips.clone()))
            .collect(),
        i.inventory
            .namespaces
            .iter()
            .map(|n| (n.name.clone(), n.labels.clone()))
            .collect(),
    )
}

fn expected(pods: &[(&str, &str)], namespaces: &[(&str, &[(&str, &str)])]) -> State {
    (
        pods.iter()
            .map(|(n, ip)| ((*n).to_string(), vec![ip.parse().unwrap()]))
            .collect(),
        namespaces
            .iter()
            .map(|(n, l)| {
                (
                    (*n).to_string(),
                    l.iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                )
            })
            .collect(),
    )
}

async fn until(watch: &mut Watch, want: &State, what: &str) {
    if state(&watch.current()) == *want {
        return;
    }
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(i) = watch.changed().await {
            if state(&i) == *want {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        got,
        Ok(true),
        "{what}: last seen {:?}, errors {:?}",
        state(&watch.current()),
        watch.errors()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_watch_follows_lists_watches_bookmarks_gone_and_relists_to_the_current_cluster() {
    let server = Arc::new(Server {
        scripts: Mutex::new(BTreeMap::from([
            ("/api/v1/pods".to_string(), script("pods.json")),
            ("/api/v1/namespaces".to_string(), script("namespaces.json")),
        ])),
        log: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
        released: (Mutex::new(0), Condvar::new()),
        stop: AtomicBool::new(false),
    });
    let url = serve(server.clone());
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let mut watch = Watch::start(client);

    let shop: &[(&str, &str)] = &[("team", "shop")];
    until(
        &mut watch,
        &expected(
            &[("shop/a", "10.0.0.1"), ("shop/b", "10.0.0.2")],
            &[("shop", shop)],
        ),
        "the first lists",
    )
    .await;

    // The watch from 100: `c` added, `a` moved, a bookmark at 110, then the stream closes.
    server.release(1);
    until(
        &mut watch,
        &expected(
            &[
                ("shop/a", "10.0.0.11"),
                ("shop/b", "10.0.0.2"),
                ("shop/c", "10.0.0.3"),
            ],
            &[("shop", shop)],
        ),
        "the first watch's events",
    )
    .await;

    // The watch resumes from the bookmark, gets 410 Gone, relists: `b` was deleted while the
    // client was away, `d` is new. The namespaces' watch gets an HTTP 410 (kube retries the
    // watch), then a 410 event (kube relists).
    server.release(2);
    let shop_prod: &[(&str, &str)] = &[("env", "prod"), ("team", "shop")];
    let payments: &[(&str, &str)] = &[("team", "payments")];
    until(
        &mut watch,
        &expected(
            &[
                ("payments/d", "10.0.0.4"),
                ("shop/a", "10.0.0.11"),
                ("shop/c", "10.0.0.3"),
            ],
            &[("payments", payments), ("shop", shop_prod)],
        ),
        "the relists after 410 Gone",
    )
    .await;

    // The watch from the relist's 200 deletes `c`.
    server.release(3);
    until(
        &mut watch,
        &expected(
            &[("payments/d", "10.0.0.4"), ("shop/a", "10.0.0.11")],
            &[("payments", payments), ("shop", shop_prod)],
        ),
        "the last watch's deletion",
    )
    .await;

    // The state can be final before each watcher has opened its last watch: wait for it.
    for (path, n) in [("/api/v1/pods", 5), ("/api/v1/namespaces", 6)] {
        let seen = || {
            server
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _, _)| p == path)
                .count()
        };
        for _ in 0..200 {
            if seen() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let errors = watch.errors();
    drop(watch);
    server.stop.store(true, Ordering::SeqCst);
    assert_eq!(*server.problems.lock().unwrap(), Vec::<String>::new());

    // What the client asked, in order, per resource: list, then watches resuming from the
    // last resourceVersion it saw (the bookmark's 110), a relist after each 410.
    let log = server.log.lock().unwrap().clone();
    let asked = |path: &str| -> Vec<String> {
        log.iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, w, q)| match w {
                false => "list".to_string(),
                true => format!(
                    "watch from {} bookmarks={}",
                    q.get("resourceVersion").map_or("-", String::as_str),
                    q.get("allowWatchBookmarks").map_or("-", String::as_str)
                ),
            })
            .collect()
    };
    assert_eq!(
        asked("/api/v1/pods"),
        [
            "list",
            "watch from 100 bookmarks=true",
            "watch from 110 bookmarks=true",
            "list",
            "watch from 200 bookmarks=true"
        ]
    );
    assert_eq!(
        asked("/api/v1/namespaces"),
        [
            "list",
            "watch from 50 bookmarks=true",
            "watch from 50 bookmarks=true",
            "watch from 50 bookmarks=true",
            "list",
            "watch from 300 bookmarks=true"
        ]
    );
    // Every 410 was reported, as kube words it.
    let mut errors = errors;
    errors.sort();
    assert_eq!(
        errors,
        [
            "Namespace watch: error returned by apiserver during watch: too old resource version: 50 (250): Expired",
            "Namespace watch: watch stream failed: ApiError: too old resource version: 50 (250): Expired (ErrorResponse { status: \"Failure\", message: \"too old resource version: 50 (250)\", reason: \"Expired\", code: 410 })",
            "Pod watch: error returned by apiserver during watch: too old resource version: 110 (150): Expired",
        ]
    );
}
