//! `palisade serve`: watches policy and inventory files, recompiles and signs on every change,
//! and serves each enforcement point its bundle over HTTP — with an ETag per revision,
//! `If-None-Match`/`304`, long polling (`?wait=30s`), a status page and Prometheus metrics.
//!
//! A change that fails validation is never served: its diagnostics are in `/v1/status` and
//! the last good revision keeps being served.

pub mod http;
pub mod inputs;
pub mod revision;
pub mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

pub use crate::revision::Recipe;
pub use crate::state::{Shared, Status};

/// How the server runs.
#[derive(Debug)]
pub struct Config {
    /// What to compile.
    pub recipe: Recipe,
    /// Where to listen for HTTP (port 0: any free port; see [`Handle::addr`]).
    pub http: SocketAddr,
    /// How long the inputs must be quiet after a change before recompiling (editors write a
    /// file in several steps).
    pub debounce: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tokio runtime.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The file watcher.
    #[error("cannot watch `{path}`: {reason}")]
    Watch {
        /// The input.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    _watcher: notify::RecommendedWatcher,
}

impl Handle {
    /// The address the HTTP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What `/v1/status` shows.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Blocks until Ctrl-C (SIGINT).
    pub fn wait_for_interrupt(&self) {
        if let Some(rt) = &self.runtime {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Compiles once, starts the HTTP listener and the file watcher, and returns. A first
/// compile that fails leaves the server up with nothing to serve (503) until the inputs are
/// fixed.
pub fn spawn(config: Config) -> Result<Handle, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("palisade-serve")
        .build()
        .map_err(Error::Runtime)?;
    let recipe = Arc::new(config.recipe);
    let shared = Arc::new(Shared::new(recipe.scopes.clone()));
    let first = recipe.build();
    log_attempt(&first, None);
    shared.apply(first, None);

    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.http))
        .map_err(|source| Error::Listen {
            addr: config.http,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.http,
        source,
    })?;
    runtime.spawn(http::serve(listener, shared.clone()));

    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = watch(&recipe.paths, tx)?;
    runtime.spawn(recompile_loop(rx, recipe, shared.clone(), config.debounce));
    tracing::info!(%addr, "serving bundles over HTTP");
    Ok(Handle {
        addr,
        shared,
        runtime: Some(runtime),
        _watcher: watcher,
    })
}

fn log_attempt(attempt: &revision::Attempt, since_change: Option<Duration>) {
    match &attempt.result {
        Ok(b) => tracing::info!(
            revision = %b.revision,
            inputs = b.inputs,
            compile_ms = attempt.took.as_secs_f64() * 1e3,
            since_change_ms = since_change.map(|d| d.as_secs_f64() * 1e3),
            "compiled"
        ),
        Err(e) => tracing::warn!(
            problems = e.diagnostics.len(),
            first = e
                .diagnostics
                .first()
                .map(|d| d.message.as_str())
                .unwrap_or(""),
            "the inputs are invalid; the last good revision is still served"
        ),
    }
}

/// Watches each input: a directory recursively; a file through its directory (editors and
/// ConfigMap mounts replace files, which drops a watch on the file itself).
fn watch(
    paths: &[PathBuf],
    tx: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, Error> {
    let inputs: Vec<(PathBuf, bool)> = paths
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let abs = abs.canonicalize().unwrap_or(abs);
            let dir = abs.is_dir();
            (abs, dir)
        })
        .collect();
    let relevant = inputs.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if changes(&event.kind) && event.paths.iter().any(|p| concerns(&relevant, p)) =>
            {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        })
        .map_err(|e| Error::Watch {
            path: String::new(),
            reason: e.to_string(),
        })?;
    for (path, dir) in &inputs {
        let (target, mode) = if *dir {
            (path.as_path(), RecursiveMode::Recursive)
        } else {
            (
                path.parent().unwrap_or(Path::new("/")),
                RecursiveMode::NonRecursive,
            )
        };
        watcher.watch(target, mode).map_err(|e| Error::Watch {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(watcher)
}

/// Events that can change what an input holds (not reads: compiling reads every input).
fn changes(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Other => false,
    }
}

fn concerns(inputs: &[(PathBuf, bool)], path: &Path) -> bool {
    inputs.iter().any(|(input, dir)| {
        if *dir {
            path.starts_with(input)
        } else {
            path == input
        }
    })
}

/// Waits for a change, lets the inputs settle for `debounce`, recompiles off the runtime
/// (compiling is CPU work), and applies the result.
async fn recompile_loop(
    mut rx: mpsc::UnboundedReceiver<()>,
    recipe: Arc<Recipe>,
    shared: Arc<Shared>,
    debounce: Duration,
) {
    // A stream of writes that never pauses still recompiles at least this often.
    let longest = debounce.saturating_mul(10).max(Duration::from_secs(1));
    while rx.recv().await.is_some() {
        let first = Instant::now();
        while first.elapsed() < longest {
            match tokio::time::timeout(debounce, rx.recv()).await {
                Ok(Some(())) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let r = recipe.clone();
        let attempt = match tokio::task::spawn_blocking(move || r.build()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "the compile task failed");
                continue;
            }
        };
        let since_change = first.elapsed();
        log_attempt(&attempt, Some(since_change));
        shared.apply(attempt, Some(since_change));
    }
}

/// Logs to standard error (the `tracing` events of the server), at `info`.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

impl Handle {
    /// How many bundle requests are waiting for a new revision now.
    pub fn long_pollers(&self) -> u64 {
        self.shared
            .metrics
            .long_pollers
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
