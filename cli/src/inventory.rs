//! `palisade inventory`: the `Inventory` document from what the orchestrator and the
//! container runtime report (`palisade-sources`), on standard output or in a file. Every
//! object that was not mapped, every note and every address warning goes to standard error.

use std::io::{Read, Write};
use std::path::PathBuf;

use palisade_sources::containers::Containers;
use palisade_sources::kubernetes::Objects;
use palisade_sources::{Import, document};

use crate::args::{DocumentFormat, InventoryArgs};
use crate::exit::Exit;

/// Runs `palisade inventory`: exit 0 when the document was written (findings or not).
pub fn inventory(args: &InventoryArgs) -> Result<Exit, String> {
    if args.kubernetes.is_empty() && args.containers.is_empty() && !args.podman {
        return Err(
            "nothing to read: name Kubernetes object files, `--containers FILE` or `--podman`"
                .into(),
        );
    }
    let mut objects = Objects::default();
    for path in &args.kubernetes {
        let (name, text) = read(path)?;
        objects.read(&name, &text).map_err(|e| e.to_string())?;
    }
    let mut containers = Containers::new(&args.container_namespace);
    for path in &args.containers {
        let (name, text) = read(path)?;
        containers.read(&name, &text).map_err(|e| e.to_string())?;
    }
    if args.podman {
        containers
            .from_command("podman", &[], &[])
            .map_err(|e| e.to_string())?;
    }
    let import = objects.import_with(containers);
    let text = match args.format {
        DocumentFormat::Yaml => document::to_yaml(&import, &args.name),
        DocumentFormat::Json => {
            let doc = document::to_json(&import.inventory, &args.name);
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n"
        }
    };
    match &args.out {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    report(&import);
    Ok(Exit::Ok)
}

fn read(path: &PathBuf) -> Result<(String, String), String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// The summary and every finding, on standard error.
fn report(import: &Import) {
    let mut err = std::io::stderr().lock();
    let counts: Vec<String> = import
        .counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let inv = &import.inventory;
    let _ = writeln!(
        err,
        "read: {}\ninventory: {} workloads, {} namespaces, {} nodes",
        if counts.is_empty() {
            "nothing".to_string()
        } else {
            counts.join(", ")
        },
        inv.workloads.len(),
        inv.namespaces.len(),
        inv.nodes.len()
    );
    for f in &import.unmapped {
        let _ = writeln!(err, "not mapped: {f}");
    }
    for f in &import.notes {
        let _ = writeln!(err, "note: {f}");
    }
    for w in inv.warnings() {
        let _ = writeln!(err, "warning: {}", w.message);
    }
}
