//! What the server holds: the bundles served now, the last compile, the clients seen, and the
//! counters `/metrics` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use palisade_engine::{Diagnostic, Scope};
use serde::Serialize;
use tokio::sync::watch;

use crate::revision::Attempt;

/// One scope's bundle as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The revision (payload SHA-256, hex); the ETag is it, quoted.
    pub revision: String,
    /// The bundle's bytes.
    pub bytes: Bytes,
}

/// The bundles served now, by scope (`mesh`, `namespace:NS`, `workload:NS/NAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Scope (as text) to its bundle; a scope is absent until its first good compile.
    pub bundles: BTreeMap<String, Arc<Served>>,
}

/// The last compile, as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompileStatus {
    /// Whether it produced bundles (and they are served).
    pub ok: bool,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// The revision it produced, when it succeeded.
    pub revision: Option<String>,
    /// Every problem found, when it failed (the bundles served did not change).
    pub diagnostics: Vec<Diagnostic>,
}

/// A client seen fetching a scope.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientStatus {
    /// The client: its `X-Palisade-Client` header, else its IP address.
    pub client: String,
    /// The scope it fetched.
    pub scope: String,
    /// The revision it holds: the one last sent to it, or the one it said it had (304).
    pub revision: String,
    /// When it was last seen, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    /// How many requests it made for this scope.
    pub requests: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The revision served now, by scope (absent before the first good compile).
    pub revisions: BTreeMap<String, String>,
    /// The scopes served.
    pub scopes: Vec<String>,
    /// The last compile (good or not).
    pub last_compile: Option<CompileStatus>,
    /// The last good compile, when the last one failed.
    pub last_good_compile: Option<CompileStatus>,
    /// Every client seen, by client then scope.
    pub clients: Vec<ClientStatus>,
}

/// Clients remembered at most: a bound so a flood of made-up client ids can't grow memory.
const MAX_CLIENTS: usize = 10_000;

/// Histogram buckets (seconds), Prometheus style.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A Prometheus histogram of durations.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bucket, count) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bucket {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us.fetch_add(micros(d), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bucket, count) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bucket}\"}} {}", get(count));
        }
        let total = get(&self.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = get(&self.sum_us) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) compiles: AtomicU64,
    pub(crate) compile_failures: AtomicU64,
    compile_time: Histogram,
    change_to_served: Histogram,
    pub(crate) bundles_served: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) long_pollers: AtomicU64,
    pub(crate) revisions: AtomicU64,
}

#[derive(Debug, Default)]
struct Book {
    last_compile: Option<CompileStatus>,
    last_good_compile: Option<CompileStatus>,
    clients: BTreeMap<(String, String), ClientStatus>,
}

/// Everything shared by the HTTP handlers and the compile loop.
#[derive(Debug)]
pub struct Shared {
    pub(crate) scopes: Vec<Scope>,
    pub(crate) current: watch::Sender<Arc<Snapshot>>,
    pub(crate) metrics: Metrics,
    book: Mutex<Book>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn new(scopes: Vec<Scope>) -> Self {
        let (current, _) = watch::channel(Arc::new(Snapshot::default()));
        Shared {
            scopes,
            current,
            metrics: Metrics::default(),
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A poisoned lock only means a handler panicked mid-update of plain records.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a compile: a good one replaces the bundles whose revision changed; a bad one
    /// changes nothing served and is recorded with its diagnostics. `since_change`: the time
    /// since the first file event that led to it. Returns whether the revision served changed.
    pub(crate) fn apply(&self, attempt: Attempt, since_change: Option<Duration>) -> bool {
        let m = &self.metrics;
        m.compiles.fetch_add(1, Ordering::Relaxed);
        m.compile_time.observe(attempt.took);
        let mut status = CompileStatus {
            ok: false,
            finished_at_ms: now_ms(),
            duration_us: micros(attempt.took),
            revision: None,
            diagnostics: Vec::new(),
        };
        let changed = match attempt.result {
            Err(errors) => {
                m.compile_failures.fetch_add(1, Ordering::Relaxed);
                status.diagnostics = errors.diagnostics;
                false
            }
            Ok(built) => {
                status.ok = true;
                status.revision = Some(built.revision.clone());
                let mut changed = false;
                self.current.send_if_modified(|snapshot| {
                    let mut next = Snapshot::clone(snapshot);
                    for (scope, bytes) in built.bundles {
                        let key = scope.to_string();
                        // Same revision: keep the bytes already served, so one ETag always
                        // names one body (a trailing comment changes the inputs' digests,
                        // not the policy).
                        if next.bundles.get(&key).map(|s| s.revision.as_str())
                            != Some(built.revision.as_str())
                        {
                            next.bundles.insert(
                                key,
                                Arc::new(Served {
                                    revision: built.revision.clone(),
                                    bytes: Bytes::from(bytes),
                                }),
                            );
                            changed = true;
                        }
                    }
                    if changed {
                        *snapshot = Arc::new(next);
                    }
                    changed
                });
                if changed {
                    m.revisions.fetch_add(1, Ordering::Relaxed);
                    if let Some(d) = since_change {
                        m.change_to_served.observe(d);
                    }
                }
                changed
            }
        };
        let mut book = self.book();
        if status.ok {
            book.last_good_compile = None;
        } else if book.last_compile.as_ref().is_some_and(|c| c.ok) {
            book.last_good_compile = book.last_compile.take();
        }
        book.last_compile = Some(status);
        changed
    }

    /// Records that `client` holds `revision` of `scope`.
    pub(crate) fn saw(&self, client: &str, scope: &str, revision: &str) {
        let mut book = self.book();
        let key = (client.to_string(), scope.to_string());
        if !book.clients.contains_key(&key) && book.clients.len() >= MAX_CLIENTS {
            return;
        }
        let entry = book.clients.entry(key).or_insert_with(|| ClientStatus {
            client: client.to_string(),
            scope: scope.to_string(),
            revision: String::new(),
            last_seen_ms: 0,
            requests: 0,
        });
        entry.revision = revision.to_string();
        entry.last_seen_ms = now_ms();
        entry.requests = entry.requests.saturating_add(1);
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Status {
        let snapshot = self.current.borrow().clone();
        let book = self.book();
        Status {
            revisions: snapshot
                .bundles
                .iter()
                .map(|(k, v)| (k.clone(), v.revision.clone()))
                .collect(),
            scopes: self.scopes.iter().map(ToString::to_string).collect(),
            last_compile: book.last_compile.clone(),
            last_good_compile: book.last_good_compile.clone(),
            clients: book.clients.values().cloned().collect(),
        }
    }

    /// `GET /metrics`: Prometheus text format 0.0.4.
    pub fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            "palisade_serve_compiles_total",
            "Compiles run (good or not).",
            "counter",
            get(&m.compiles),
        );
        counter(
            "palisade_serve_compile_failures_total",
            "Compiles that failed validation; nothing they made was served.",
            "counter",
            get(&m.compile_failures),
        );
        counter(
            "palisade_serve_revisions_total",
            "Compiles that changed the revision served.",
            "counter",
            get(&m.revisions),
        );
        counter(
            "palisade_serve_bundles_served_total",
            "Bundle responses with a body (200).",
            "counter",
            get(&m.bundles_served),
        );
        counter(
            "palisade_serve_not_modified_total",
            "Bundle responses 304 Not Modified.",
            "counter",
            get(&m.not_modified),
        );
        counter(
            "palisade_serve_long_pollers",
            "Bundle requests waiting for a new revision now.",
            "gauge",
            get(&m.long_pollers),
        );
        m.compile_time.render(
            &mut out,
            "palisade_serve_compile_seconds",
            "Time to read, compile and sign.",
        );
        m.change_to_served.render(
            &mut out,
            "palisade_serve_change_to_served_seconds",
            "From the first file event of a change to its new revision being served (debounce included).",
        );
        out
    }
}
