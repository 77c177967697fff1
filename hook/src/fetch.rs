//! Fetching the bundle from `palisade serve` (`--bundle-url`), and the last verified one
//! kept on disk for when the server can't be reached.
//!
//! A hook runs once per container start, so a fetch is bounded (`--fetch-timeout`, 500 ms by
//! default). The request carries `If-None-Match` with the persisted bundle's revision only
//! when that bundle verifies; a fetched bundle is written to disk only after it verified and
//! decided (was activated), so a bundle that failed is never kept, nor its ETag (OPA kept the
//! ETag of a bundle it failed to activate, and never fetched it again).

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{usable_dir, write_atomic};

/// How long a fetch may take, connection included.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest bundle accepted.
const MAX_BUNDLE: u64 = 256 << 20;
/// The file the last verified bundle is kept in, under the bundle cache directory.
pub const PERSISTED: &str = "last-verified.plsd";

/// Where the bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `http://HOST:PORT/v1/bundles/mesh`.
    pub url: String,
    /// The bound on the whole fetch.
    pub timeout: Duration,
    /// Where the last verified bundle is kept; `None`: nowhere (with the server down the hook
    /// then fails closed).
    pub dir: Option<PathBuf>,
}

/// Where the bundle the hook decides with came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Fetched now (200): to persist once it has decided.
    Fetched,
    /// The server said the persisted one is current (304).
    NotModified,
    /// The server could not be reached or sent something refused: the persisted one, and why.
    Persisted(String),
}

/// A bundle to decide with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obtained {
    /// Its bytes (already verified).
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
    /// The persisted bundle, when one verified: the fallback if the fetched one fails to
    /// decide.
    pub persisted: Option<Vec<u8>>,
}

/// The persisted bundle, when there is one and it verifies (keys may have changed since).
fn persisted(dir: Option<&Path>, verify: &dyn Fn(&[u8]) -> Result<(), String>) -> Option<Vec<u8>> {
    // Only from a directory only this user can write: a bundle there decides when the server
    // is down, and the signature alone would not stop a rollback to an older signed bundle.
    let dir = match usable_dir(dir?) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("palisade-oci-hook: warning: not using the bundle cache: {e}");
            return None;
        }
    };
    let path = dir.join(PERSISTED);
    let bytes = fs::read(&path).ok()?;
    match verify(&bytes) {
        Ok(()) => Some(bytes),
        Err(e) => {
            eprintln!(
                "palisade-oci-hook: warning: ignoring the persisted bundle `{}`: {e}",
                path.display()
            );
            None
        }
    }
}

/// The name this host gives itself to the server (`/v1/status` lists clients by it).
fn client_name() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("palisade-oci-hook@{}", host.trim())
}

/// Fetches the bundle (or learns the persisted one is current), verifying what it gets with
/// `verify`; falls back to the persisted bundle; fails closed with neither.
pub fn obtain(
    remote: &Remote,
    verify: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<Obtained, String> {
    let kept = persisted(remote.dir.as_deref(), verify);
    let fallback = |why: String| match &kept {
        Some(bytes) => {
            eprintln!("palisade-oci-hook: warning: {why}; deciding with the persisted bundle");
            Ok(Obtained {
                bytes: bytes.clone(),
                origin: Origin::Persisted(why),
                persisted: kept.clone(),
            })
        }
        None => Err(format!("{why}, and no bundle is persisted")),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(remote.timeout))
        .max_redirects(0)
        .build()
        .into();
    let mut request = agent
        .get(&remote.url)
        .header("x-palisade-client", client_name());
    if let Some(revision) = kept
        .as_deref()
        .and_then(palisade_engine::bundle::digest_hex)
    {
        request = request.header("if-none-match", format!("\"{revision}\""));
    }
    let mut response = match request.call() {
        Ok(r) => r,
        Err(e) => return fallback(format!("cannot fetch `{}`: {e}", remote.url)),
    };
    match response.status().as_u16() {
        200 => {}
        304 if kept.is_some() => {
            return Ok(Obtained {
                bytes: kept.clone().unwrap_or_default(),
                origin: Origin::NotModified,
                persisted: kept,
            });
        }
        status => {
            return fallback(format!("`{}` answered HTTP {status}", remote.url));
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = response
        .body_mut()
        .as_reader()
        .take(MAX_BUNDLE)
        .read_to_end(&mut bytes)
    {
        return fallback(format!("cannot read the bundle from `{}`: {e}", remote.url));
    }
    match verify(&bytes) {
        Ok(()) => Ok(Obtained {
            bytes,
            origin: Origin::Fetched,
            persisted: kept,
        }),
        Err(e) => fallback(format!("refused the bundle from `{}`: {e}", remote.url)),
    }
}

/// Keeps a bundle that verified and decided, for the next start with the server down.
pub fn persist(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = usable_dir(dir)?;
    write_atomic(&dir.join(PERSISTED), bytes)
}
