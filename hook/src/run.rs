//! One hook invocation: read the inputs, load the policy, decide, and say so.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::component::{Admission, DEFAULT_FUEL, Guest, admit_native};
use crate::input::{self, HookInput};
use crate::policy::{PolicyPath, PolicySource};
use palisade_engine::{Scope, TrustedKeys, bundle};

/// What the hook was asked to do (flags and environment, already read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The policy (`--bundle`, `--policy`, `PALISADE_BUNDLE`, `PALISADE_POLICY`).
    pub policy: Option<PolicyPath>,
    /// The component (`--component`, `PALISADE_COMPONENT`, else next to the binary).
    pub component: Option<PathBuf>,
    /// The precompiled-component cache (`--cache-dir`, `PALISADE_CACHE_DIR`); `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// Decide with the native engine instead of the component (`--native`).
    pub native: bool,
    /// Keep a copy of the inputs and the decision under this directory (`--record`).
    pub record: Option<PathBuf>,
    /// Fuel for each call into the component (`--fuel`).
    pub fuel: u64,
    /// Annotations applied over the container's own (`--annotation k=v`).
    pub annotations: Vec<(String, String)>,
    /// Print where the time went to stderr (`--timing`).
    pub timing: bool,
    /// Read the state from this file instead of stdin (`--state-file`: benchmarks, replay).
    pub state_file: Option<PathBuf>,
    /// Read `config.json` from this file instead of the bundle (`--config-file`: replay).
    pub config_file: Option<PathBuf>,
    /// Gather no host facts (`--no-host-facts`: replaying inputs recorded on another host,
    /// where this host's namespaces and files say nothing); the engine judges by spelling.
    pub no_host_facts: bool,
    /// The keys a bundle must be signed by (`--trusted-key ID=KEY`, `PALISADE_TRUSTED_KEYS`);
    /// none: bundles are accepted unsigned. When set, YAML policies are refused.
    pub trusted_keys: Vec<(String, String)>,
    /// Fetch the bundle from `palisade serve` (`--bundle-url`, `PALISADE_BUNDLE_URL`), keeping
    /// the last verified one in `dir` (`--bundle-cache`); needs trusted keys.
    pub remote: Option<crate::fetch::Remote>,
    /// Provenance envelopes (`*.json`) offered to `images.provenance` (`--attestations DIR`,
    /// `PALISADE_ATTESTATIONS`); read with the host facts.
    pub attestations: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            policy: None,
            component: None,
            cache_dir: None,
            native: false,
            record: None,
            fuel: DEFAULT_FUEL,
            annotations: Vec::new(),
            timing: false,
            state_file: None,
            config_file: None,
            no_host_facts: false,
            trusted_keys: Vec::new(),
            remote: None,
            attestations: None,
        }
    }
}

/// How the hook ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container may start (exit 0).
    Allowed(Admission),
    /// A policy denies it (exit 1).
    Denied(Admission),
    /// The hook could not decide: the container is denied (exit 2).
    Failed(String),
}

impl Outcome {
    /// The process exit code: 0 allow, 1 deny, 2 fail closed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Allowed(_) => 0,
            Outcome::Denied(_) => 1,
            Outcome::Failed(_) => 2,
        }
    }

    /// What the hook writes to stderr (empty on a plain allow).
    pub fn report(&self) -> String {
        match self {
            Outcome::Allowed(a) if a.skipped.is_none() => String::new(),
            Outcome::Allowed(a) | Outcome::Denied(a) => {
                format!("palisade-oci-hook: {}\n", a.explanation)
            }
            Outcome::Failed(why) => {
                format!("palisade-oci-hook: container start denied (fail closed): {why}\n")
            }
        }
    }
}

/// Runs the hook on the state read from `stdin`.
pub fn run(args: &Args, stdin: impl Read) -> Outcome {
    let state = match input::read_limited(stdin, "the OCI state on stdin") {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    let input = input::from_state_with(state.clone(), args.config_file.as_deref());
    let outcome = match &input {
        Ok(i) => decide(args, i),
        Err(e) => Outcome::Failed(e.clone()),
    };
    if let Some(dir) = &args.record
        && let Err(e) = record(dir, &state, input.as_ref().ok(), &outcome)
    {
        eprintln!("palisade-oci-hook: warning: cannot record: {e}");
    }
    outcome
}

/// With trusted keys, only a bundle signed by one of them for the whole mesh (the hook admits
/// every container on its host) is enforced; anything else fails closed.
fn verify(policy: &PolicySource, keys: &[(String, String)]) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    let keys = TrustedKeys::parse(keys.iter().map(|(id, k)| (id.as_str(), k.as_str())))
        .map_err(|e| e.to_string())?;
    match policy {
        PolicySource::Bundle(bytes) => bundle::parts(bytes)
            .and_then(|p| p.verify(&keys, &Scope::Mesh))
            .map_err(|e| format!("invalid policy: {e}")),
        PolicySource::Yaml(_) => Err(
            "trusted keys are configured, so the policy must be a signed bundle (`--bundle`), \
             not YAML"
                .into(),
        ),
    }
}

fn decide(args: &Args, input: &HookInput) -> Outcome {
    if let Some(remote) = &args.remote {
        return decide_remote(args, remote, input);
    }
    let policy = match &args.policy {
        Some(p) => p,
        None => {
            return Outcome::Failed(
                "no policy: give `--bundle <file>` or `--policy <file|dir>` (or set `PALISADE_BUNDLE` / `PALISADE_POLICY`), or fetch it with `--bundle-url <url>`".into(),
            );
        }
    };
    decide_with(args, input, policy.read())
}

/// Decides with the bundle fetched from the server (or the persisted one), and keeps a
/// fetched bundle once it has decided: a bundle that fails to verify or to load is never
/// kept, and the persisted one decides instead.
fn decide_remote(args: &Args, remote: &crate::fetch::Remote, input: &HookInput) -> Outcome {
    if args.trusted_keys.is_empty() {
        return Outcome::Failed(
            "`--bundle-url` needs `--trusted-key`: a bundle fetched over the network is enforced only when signed by a trusted key".into(),
        );
    }
    let check = |bytes: &[u8]| verify(&PolicySource::Bundle(bytes.to_vec()), &args.trusted_keys);
    let obtained = match crate::fetch::obtain(remote, &check) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(e),
    };
    let outcome = decide_with(
        args,
        input,
        Ok(PolicySource::Bundle(obtained.bytes.clone())),
    );
    if obtained.origin != crate::fetch::Origin::Fetched {
        return outcome;
    }
    match (&outcome, &obtained.persisted) {
        (Outcome::Failed(why), Some(kept)) => {
            eprintln!(
                "palisade-oci-hook: warning: the fetched bundle cannot decide ({why}); deciding with the persisted bundle"
            );
            decide_with(args, input, Ok(PolicySource::Bundle(kept.clone())))
        }
        (Outcome::Failed(_), None) => outcome,
        _ => {
            if let Some(dir) = &remote.dir
                && let Err(e) = crate::fetch::persist(dir, &obtained.bytes)
            {
                eprintln!("palisade-oci-hook: warning: cannot persist the fetched bundle: {e}");
            }
            outcome
        }
    }
}

fn decide_with(args: &Args, input: &HookInput, policy: Result<PolicySource, String>) -> Outcome {
    let mut facts = (!args.no_host_facts)
        .then(|| crate::host::gather(&input.bundle, &input.config_json, &input.annotations));
    if let (Some(f), Some(dir)) = (facts.as_mut(), &args.attestations) {
        match crate::host::attestations(dir) {
            Ok(a) => f.attestations = a,
            Err(e) => return Outcome::Failed(e),
        }
    }
    let result = policy.and_then(|policy| {
        verify(&policy, &args.trusted_keys)?;
        if args.native {
            admit_native(
                &policy,
                &input.state_json,
                &input.config_json,
                &args.annotations,
                facts.as_ref(),
            )
        } else {
            let wasm = args
                .component
                .clone()
                .ok_or_else(|| "no component: give `--component <file.wasm>`".to_string())?;
            let started = std::time::Instant::now();
            let mut guest = Guest::new(&wasm, args.cache_dir.as_deref(), args.fuel)?;
            let ready = started.elapsed();
            guest.load(&policy)?;
            let (loaded, load_fuel) = (started.elapsed(), guest.fuel_used());
            let admission = guest.admit(
                &input.state_json,
                &input.config_json,
                &args.annotations,
                facts.as_ref(),
            );
            if args.timing {
                eprintln!(
                    "palisade-oci-hook: timing: component ready ({:?}) {ready:?}, policy loaded +{:?} ({load_fuel} fuel), admitted +{:?} ({} fuel)",
                    guest.cache,
                    loaded.saturating_sub(ready),
                    started.elapsed().saturating_sub(loaded),
                    guest.fuel_used()
                );
            }
            admission
        }
    });
    match result {
        Ok(a) if a.allowed => Outcome::Allowed(a),
        Ok(a) => Outcome::Denied(a),
        Err(e) => Outcome::Failed(e),
    }
}

/// Writes `<dir>/<id>/state.json`, `config.json` (as received) and `expect.json` (the
/// decision: allowed, and the violated controls).
fn record(
    dir: &Path,
    state: &str,
    input: Option<&HookInput>,
    outcome: &Outcome,
) -> Result<(), String> {
    let name = input
        .map(|i| sanitize(&i.id))
        .unwrap_or_else(|| format!("unreadable-{}", std::process::id()));
    let out = dir.join(name);
    fs::create_dir_all(&out).map_err(|e| format!("`{}`: {e}", out.display()))?;
    let write = |file: &str, text: &str| {
        let p = out.join(file);
        fs::write(&p, text).map_err(|e| format!("`{}`: {e}", p.display()))
    };
    write("state.json", state)?;
    if let Some(i) = input {
        write("config.json", &i.config_json)?;
    }
    let expect = match outcome {
        Outcome::Allowed(a) | Outcome::Denied(a) => serde_json::json!({
            "allowed": a.allowed,
            "controls": a.violations.iter().map(|v| v.control.as_str()).collect::<Vec<_>>(),
        }),
        Outcome::Failed(e) => serde_json::json!({"allowed": false, "error": e}),
    };
    let text = serde_json::to_string_pretty(&expect).map_err(|e| e.to_string())?;
    write("expect.json", &format!("{text}\n"))
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}
