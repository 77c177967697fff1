//! The hook's inputs: the OCI state on stdin and the bundle's `config.json`.
//!
//! Only what the hook itself needs is read here (the container id and the bundle path); the
//! whole documents go to the engine, which reads them tolerantly: `status` may be `creating`
//! (runc), `created` (crun's createRuntime) or `starting`; `ociVersion` may be `1.0`; extra
//! fields (crun's `root`) are ignored.
//!
//! `config.json` is cut after its first JSON document, as runc reads it (trailing bytes,
//! UTF-8 or not, are what runc ignores and crun refuses; see
//! `palisade_engine::container::read`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The largest state or `config.json` the hook reads (a real one is a few KiB).
pub const MAX_INPUT: u64 = 8 * 1024 * 1024;

/// What the runtime handed the hook, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInput {
    /// The container id, from the state.
    pub id: String,
    /// The bundle directory, from the state.
    pub bundle: PathBuf,
    /// The state JSON as received.
    pub state_json: String,
    /// `<bundle>/config.json` as read, up to the end of its first JSON document.
    pub config_json: String,
    /// The state's annotations.
    pub annotations: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct StateHead {
    id: String,
    bundle: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads at most [`MAX_INPUT`] bytes of UTF-8 from `r`.
pub fn read_limited(r: impl Read, what: &str) -> Result<String, String> {
    String::from_utf8(read_bytes(r, what)?).map_err(|_| format!("{what} is not UTF-8"))
}

fn read_bytes(r: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(format!("{what} is larger than {MAX_INPUT} bytes"));
    }
    Ok(buf)
}

/// Reads the state's id and bundle, then `<bundle>/config.json`.
pub fn from_state(state_json: String) -> Result<HookInput, String> {
    from_state_with(state_json, None)
}

/// As [`from_state`], reading `config.json` from `config_file` when given (replaying a
/// recording whose bundle is elsewhere).
pub fn from_state_with(
    state_json: String,
    config_file: Option<&Path>,
) -> Result<HookInput, String> {
    if state_json.trim().is_empty() {
        return Err("no OCI state on stdin (is this running as an OCI hook?)".into());
    }
    let head: StateHead = serde_json::from_str(&state_json)
        .map_err(|e| format!("invalid OCI state on stdin: {e}"))?;
    if head.id.is_empty() {
        return Err("invalid OCI state on stdin: empty `id`".into());
    }
    let bundle = PathBuf::from(&head.bundle);
    if !bundle.is_absolute() {
        return Err(format!(
            "invalid OCI state on stdin: `bundle` must be an absolute path, got `{}`",
            head.bundle
        ));
    }
    let config_json = match config_file {
        Some(p) => read_config_file(p)?,
        None => read_config(&bundle)?,
    };
    Ok(HookInput {
        id: head.id,
        bundle,
        state_json,
        config_json,
        annotations: head.annotations.into_iter().collect(),
    })
}

/// Reads `<bundle>/config.json`.
pub fn read_config(bundle: &Path) -> Result<String, String> {
    read_config_file(&bundle.join("config.json"))
}

fn read_config_file(path: &Path) -> Result<String, String> {
    let file =
        fs::File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let bytes = read_bytes(file, &format!("`{}`", path.display()))?;
    palisade_engine::container::read::first_document(&bytes)
        .map(str::to_string)
        .map_err(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stdin_says_it_expected_a_state() {
        let err = from_state(String::new()).err().unwrap_or_default();
        assert!(err.contains("no OCI state"), "{err}");
    }

    #[test]
    fn a_relative_bundle_is_refused() {
        let err = from_state(r#"{"id":"c","bundle":"rel","status":"creating"}"#.into())
            .err()
            .unwrap_or_default();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn a_missing_config_names_the_path() {
        let err = from_state(r#"{"id":"c","bundle":"/nonexistent/b","status":"created"}"#.into())
            .err()
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/b/config.json"), "{err}");
    }

    #[test]
    fn crun_extras_and_status_are_accepted() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        fs::write(dir.path().join("config.json"), "{}").map_err(|e| e.to_string())?;
        let state = format!(
            r#"{{"ociVersion":"1.0","id":"c-crun","pid":0,"root":"rootfs","bundle":"{}","status":"starting"}}"#,
            dir.path().display()
        );
        let input = from_state(state)?;
        assert_eq!(
            (input.id.as_str(), input.config_json.as_str()),
            ("c-crun", "{}")
        );
        Ok(())
    }
}
