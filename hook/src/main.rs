//! `palisade-oci-hook`: an OCI runtime hook (`createRuntime` or `prestart`) that lets a
//! container start only if Palisade's ContainerPolicies allow it.
//!
//! ```text
//! palisade-oci-hook (--bundle <file> | --policy <file|dir> | --bundle-url <url>)
//!                   [--bundle-cache <dir>] [--fetch-timeout-ms <n>] [--component <file.wasm>]
//!                   [--cache-dir <dir>] [--native] [--record <dir>] [--fuel <n>]
//!                   [--annotation <key=value>]... [--state-file <file>] [--timing]
//!                   [--config-file <file>] [--no-host-facts] [--trusted-key <id=key>]...
//!                   [--attestations <dir>]
//! ```
//!
//! The OCI state comes on stdin; exit 0 allows, 1 denies (the reasons on stderr), 2 is a
//! fail-closed deny (the hook could not decide).

use std::env;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use palisade_oci_hook::cache::DEFAULT_CACHE_DIR;
use palisade_oci_hook::component::{DEFAULT_FUEL, Guest};
use palisade_oci_hook::fetch::{DEFAULT_FETCH_TIMEOUT, Remote};
use palisade_oci_hook::policy::PolicyPath;
use palisade_oci_hook::{Args, Outcome, run};

const USAGE: &str = "usage: palisade-oci-hook (--bundle <file> | --policy <file|dir> | \
--bundle-url <url> [--bundle-cache <dir>] [--fetch-timeout-ms <n>]) [--component <file.wasm>] [--cache-dir <dir>] [--native] [--record <dir>] [--fuel <n>] \
[--annotation <key=value>]... [--state-file <file>] [--timing] \
[--config-file <file>] [--no-host-facts] [--trusted-key <id=key>]... [--attestations <dir>]
       palisade-oci-hook --precompile [--component <file.wasm>] [--cache-dir <dir>]
Reads the OCI state on stdin and <bundle>/config.json; exits 0 to allow, 1 to deny, 2 when it
cannot decide (fail closed). Environment: PALISADE_BUNDLE, PALISADE_POLICY, PALISADE_COMPONENT,
PALISADE_CACHE_DIR (default /var/cache/palisade-oci-hook), PALISADE_TRUSTED_KEYS (id=key,...:
with trusted keys, only a bundle signed by one of them for the mesh is enforced),
PALISADE_BUNDLE_URL (fetch from `palisade serve`; needs trusted keys; the last verified bundle
is kept in --bundle-cache, default <cache-dir>/bundles, and decides when the server is down),
PALISADE_ATTESTATIONS (a directory of provenance envelopes, *.json, for images.provenance).";

/// The component installed next to the binary.
const COMPONENT_FILE: &str = "palisade_component.wasm";

enum Mode {
    Hook(Args),
    Precompile(Args),
    Help,
}

fn main() -> ExitCode {
    match parse(env::args_os().skip(1).collect()) {
        Ok(Mode::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Mode::Precompile(args)) => precompile(&args),
        Ok(Mode::Hook(args)) => {
            let outcome = match &args.state_file {
                None => run(&args, io::stdin().lock()),
                Some(p) => match std::fs::File::open(p) {
                    Ok(f) => run(&args, f),
                    Err(e) => Outcome::Failed(format!(
                        "cannot open the state file `{}`: {e}",
                        p.display()
                    )),
                },
            };
            eprint!("{}", outcome.report());
            ExitCode::from(outcome.exit_code())
        }
        Err(e) => {
            let outcome = Outcome::Failed(format!("{e}\n{USAGE}"));
            eprint!("{}", outcome.report());
            ExitCode::from(outcome.exit_code())
        }
    }
}

/// Compiles the component into the cache (run once at install time).
fn precompile(args: &Args) -> ExitCode {
    let Some(wasm) = &args.component else {
        eprintln!("palisade-oci-hook: no component: give `--component <file.wasm>`");
        return ExitCode::from(2);
    };
    match Guest::new(wasm, args.cache_dir.as_deref(), args.fuel) {
        Ok(g) => {
            eprintln!("palisade-oci-hook: component ready ({:?})", g.cache);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade-oci-hook: {e}");
            ExitCode::from(2)
        }
    }
}

/// `ID=KEY`: a key id and the base64 of an ed25519 public key.
fn key_entry(entry: &str) -> Result<(String, String), String> {
    entry
        .trim()
        .split_once('=')
        .filter(|(id, key)| !id.is_empty() && !key.is_empty())
        .map(|(id, key)| (id.to_string(), key.to_string()))
        .ok_or_else(|| format!("a trusted key is `ID=KEY` (base64 public key), got `{entry}`"))
}

fn parse(argv: Vec<OsString>) -> Result<Mode, String> {
    let mut args = Args {
        policy: env::var_os("PALISADE_BUNDLE")
            .map(|p| PolicyPath::Bundle(p.into()))
            .or_else(|| env::var_os("PALISADE_POLICY").map(|p| PolicyPath::Yaml(p.into()))),
        component: env::var_os("PALISADE_COMPONENT").map(PathBuf::from),
        attestations: env::var_os("PALISADE_ATTESTATIONS").map(PathBuf::from),
        cache_dir: Some(
            env::var_os("PALISADE_CACHE_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from),
        ),
        fuel: DEFAULT_FUEL,
        trusted_keys: match env::var("PALISADE_TRUSTED_KEYS") {
            Ok(v) => v
                .split(',')
                .filter(|e| !e.trim().is_empty())
                .map(key_entry)
                .collect::<Result<_, _>>()?,
            Err(_) => Vec::new(),
        },
        ..Args::default()
    };
    let mut precompile = false;
    let mut url = env::var("PALISADE_BUNDLE_URL").ok();
    let mut bundle_cache: Option<PathBuf> = None;
    let mut fetch_timeout = DEFAULT_FETCH_TIMEOUT;
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let flag = flag
            .into_string()
            .map_err(|f| format!("unknown argument `{}`", f.to_string_lossy()))?;
        let mut value = |name: &str| it.next().ok_or_else(|| format!("`{name}` needs a value"));
        match flag.as_str() {
            "--bundle" => args.policy = Some(PolicyPath::Bundle(value("--bundle")?.into())),
            "--policy" => args.policy = Some(PolicyPath::Yaml(value("--policy")?.into())),
            "--component" => args.component = Some(value("--component")?.into()),
            "--cache-dir" => args.cache_dir = Some(value("--cache-dir")?.into()),
            "--no-cache" => args.cache_dir = None,
            "--record" => args.record = Some(value("--record")?.into()),
            "--state-file" => args.state_file = Some(value("--state-file")?.into()),
            "--config-file" => args.config_file = Some(value("--config-file")?.into()),
            "--no-host-facts" => args.no_host_facts = true,
            "--attestations" => args.attestations = Some(value("--attestations")?.into()),
            "--trusted-key" => {
                let v = value("--trusted-key")?;
                args.trusted_keys.push(key_entry(&v.to_string_lossy())?);
            }
            "--bundle-url" => url = Some(value("--bundle-url")?.to_string_lossy().into_owned()),
            "--bundle-cache" => bundle_cache = Some(value("--bundle-cache")?.into()),
            "--fetch-timeout-ms" => {
                let v = value("--fetch-timeout-ms")?;
                fetch_timeout = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!(
                            "`--fetch-timeout-ms` needs a number, got `{}`",
                            v.to_string_lossy()
                        )
                    })?;
            }
            "--native" => args.native = true,
            "--timing" => args.timing = true,
            "--precompile" => precompile = true,
            "--fuel" => {
                let v = value("--fuel")?;
                args.fuel = v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    format!("`--fuel` needs a number, got `{}`", v.to_string_lossy())
                })?;
            }
            "--annotation" => {
                let v = value("--annotation")?;
                let v = v.to_string_lossy();
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("`--annotation` needs `key=value`, got `{v}`"))?;
                args.annotations.push((k.to_string(), val.to_string()));
            }
            "-h" | "--help" => return Ok(Mode::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    args.remote = url.map(|url| Remote {
        url,
        timeout: fetch_timeout,
        dir: bundle_cache.or_else(|| args.cache_dir.as_ref().map(|d| d.join("bundles"))),
    });
    if args.component.is_none() {
        args.component = env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(COMPONENT_FILE)));
    }
    Ok(if precompile {
        Mode::Precompile(args)
    } else {
        Mode::Hook(args)
    })
}
