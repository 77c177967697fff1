//! The `Inventory` document (`docs/inventory.md`) written out, as YAML or JSON, so that
//! `palisade check` and `compile` read back exactly the inventory that was imported.

use std::fmt::Write as _;

use palisade_engine::inventory::{Inventory, NamedPort, Workload};
use palisade_engine::request::Transport;
use serde_json::{Map, Value, json};

use crate::members::phase_name;
use crate::{Import, WorkloadImages};

/// The document as JSON (which the engine's YAML reader also reads).
pub fn to_json(inv: &Inventory, name: &str) -> Value {
    let namespaces: Vec<Value> = inv
        .namespaces
        .iter()
        .map(|n| {
            let mut m = Map::new();
            m.insert("name".into(), json!(n.name));
            if !n.labels.is_empty() {
                m.insert("labels".into(), json!(n.labels));
            }
            Value::Object(m)
        })
        .collect();
    let nodes: Vec<Value> = inv
        .nodes
        .iter()
        .map(|n| json!({"name": n.name, "ips": n.ips.iter().map(ToString::to_string).collect::<Vec<_>>()}))
        .collect();
    let workloads: Vec<Value> = inv.workloads.iter().map(workload_json).collect();
    let mut spec = Map::new();
    if !nodes.is_empty() {
        spec.insert("nodes".into(), Value::Array(nodes));
    }
    spec.insert("namespaces".into(), Value::Array(namespaces));
    spec.insert("workloads".into(), Value::Array(workloads));
    json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "Inventory",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn workload_json(w: &Workload) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(w.name));
    m.insert("namespace".into(), json!(w.namespace));
    m.insert("serviceAccount".into(), json!(w.service_account));
    if !w.labels.is_empty() {
        m.insert("labels".into(), json!(w.labels));
    }
    if !w.ips.is_empty() {
        m.insert(
            "ips".into(),
            json!(w.ips.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
    }
    if !w.ports.is_empty() {
        m.insert(
            "ports".into(),
            Value::Array(w.ports.iter().map(port_json).collect()),
        );
    }
    if let Some(p) = w.phase {
        m.insert("phase".into(), json!(phase_name(Some(p))));
    }
    if w.terminating {
        m.insert("terminating".into(), json!(true));
    }
    if w.host_network {
        m.insert("hostNetwork".into(), json!(true));
    }
    if !w.node_name.is_empty() {
        m.insert("nodeName".into(), json!(w.node_name));
    }
    Value::Object(m)
}

fn port_json(p: &NamedPort) -> Value {
    let mut m = Map::new();
    if !p.name.is_empty() {
        m.insert("name".into(), json!(p.name));
    }
    m.insert("port".into(), json!(p.port));
    if p.protocol != Transport::Tcp {
        m.insert("protocol".into(), json!(transport(p.protocol)));
    }
    Value::Object(m)
}

fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
        Transport::Sctp => "SCTP",
    }
}

/// The document as YAML, in the layout of `docs/inventory.md`, with each workload's images
/// and every finding as comments (the document itself has no field for them).
pub fn to_yaml(import: &Import, name: &str) -> String {
    let inv = &import.inventory;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `palisade inventory`: {} workloads, {} namespaces, {} nodes; {} objects not mapped, {} notes.",
        inv.workloads.len(),
        inv.namespaces.len(),
        inv.nodes.len(),
        import.unmapped.len(),
        import.notes.len()
    );
    for f in &import.unmapped {
        let _ = writeln!(out, "# not mapped: {}", one_line(&f.to_string()));
    }
    for f in &import.notes {
        let _ = writeln!(out, "# note: {}", one_line(&f.to_string()));
    }
    out.push_str("apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata:\n");
    let _ = writeln!(out, "  name: {}", scalar(name));
    out.push_str("spec:\n");
    if !inv.nodes.is_empty() {
        out.push_str("  nodes:\n");
        for n in &inv.nodes {
            let _ = writeln!(out, "    - name: {}", scalar(&n.name));
            let _ = writeln!(out, "      ips: {}", ips(&n.ips));
        }
    }
    out.push_str("  namespaces:");
    if inv.namespaces.is_empty() {
        out.push_str(" []");
    }
    out.push('\n');
    for n in &inv.namespaces {
        let _ = writeln!(out, "    - name: {}", scalar(&n.name));
        if !n.labels.is_empty() {
            let _ = writeln!(out, "      labels: {}", labels(&n.labels));
        }
    }
    out.push_str("  workloads:");
    if inv.workloads.is_empty() {
        out.push_str(" []");
    }
    out.push('\n');
    for w in &inv.workloads {
        if let Some(imgs) = images_of(&import.images, w) {
            for i in &imgs.images {
                let _ = writeln!(
                    out,
                    "    # image {}: {}{}",
                    one_line(&i.container),
                    one_line(&i.image),
                    i.digest.as_ref().map_or_else(
                        || " (no digest)".to_string(),
                        |d| format!(" @ {}", one_line(d))
                    )
                );
            }
        }
        let _ = writeln!(out, "    - name: {}", scalar(&w.name));
        let _ = writeln!(out, "      namespace: {}", scalar(&w.namespace));
        let _ = writeln!(out, "      serviceAccount: {}", scalar(&w.service_account));
        if !w.labels.is_empty() {
            let _ = writeln!(out, "      labels: {}", labels(&w.labels));
        }
        if !w.ips.is_empty() {
            let _ = writeln!(out, "      ips: {}", ips(&w.ips));
        }
        if !w.ports.is_empty() {
            out.push_str("      ports:\n");
            for p in &w.ports {
                let mut fields = Vec::new();
                if !p.name.is_empty() {
                    fields.push(format!("name: {}", scalar(&p.name)));
                }
                fields.push(format!("port: {}", p.port));
                if p.protocol != Transport::Tcp {
                    fields.push(format!("protocol: {}", transport(p.protocol)));
                }
                let _ = writeln!(out, "        - {{{}}}", fields.join(", "));
            }
        }
        if let Some(p) = w.phase {
            let _ = writeln!(out, "      phase: {}", phase_name(Some(p)));
        }
        if w.terminating {
            out.push_str("      terminating: true\n");
        }
        if w.host_network {
            out.push_str("      hostNetwork: true\n");
        }
        if !w.node_name.is_empty() {
            let _ = writeln!(out, "      nodeName: {}", scalar(&w.node_name));
        }
    }
    out
}

fn images_of<'a>(images: &'a [WorkloadImages], w: &Workload) -> Option<&'a WorkloadImages> {
    images
        .iter()
        .find(|i| i.namespace == w.namespace && i.name == w.name)
}

/// A comment stays one line whatever the object names hold.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    let items: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{}: {}", scalar(k), scalar(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn ips(ips: &[std::net::IpAddr]) -> String {
    let items: Vec<String> = ips.iter().map(|ip| scalar(&ip.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// A string as a YAML scalar: plain when YAML reads it back as the same string, else
/// double-quoted (JSON quoting is valid YAML).
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}
