//! Reading `config.json` as every supported runtime would, or refusing it.
//!
//! runc decodes `config.json` with Go's `encoding/json`: an object key matches a field
//! case-insensitively, with Unicode simple folding (`ſ` U+017F is an `s`, `K` U+212A KELVIN
//! SIGN a `k`), and when several keys match the same field the last one wins. crun (yajl,
//! libocispec) matches keys exactly and takes the first of duplicates; serde matches exactly
//! and ignores keys it does not know. So `"Capabilities"`, `"UID"` beside `"uid"`, or a second
//! `"noNewPrivileges"` make runc run a container that crun, youki and Palisade read otherwise.
//!
//! [`read_config`] refuses — fails closed, saying where and why — any document that two
//! runtimes could read differently:
//!
//! * a key that equals a known OCI key only after folding (`process.Capabilities`,
//!   `linux.ſeccomp`, top-level `Linux`), at any depth of the runtime-spec schema;
//! * a key present twice in one object (a known key, or any key of a map such as
//!   `annotations` or `linux.sysctl`);
//! * two `linux.namespaces` entries of one type (runc refuses them; crun reads the last).
//!
//! Keys the schema does not know are ignored by every runtime alike and pass.
//!
//! **Trailing data** after the JSON document is accepted, and the first document is what is
//! decided on: runc reads that first document and ignores the rest (`json.Decoder.Decode`),
//! crun and youki refuse the whole file, so no runtime acts on anything but the first
//! document. Refusing it would deny containers runc runs identically. [`first_document`] cuts
//! a file's bytes there for hosts (the OCI hook) that read the file themselves, so bytes that
//! are not UTF-8 after the document do not refuse it either.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::container::OciConfig;
use crate::error::ConfigError;

/// How many problems one refusal lists before `…`.
const MAX_REPORTED: usize = 8;

/// Reads `config.json` text: refuses what runtimes could read differently, then decodes
/// the first JSON document (trailing data is ignored, as runc ignores it).
pub fn read_config(text: &str) -> Result<OciConfig, ConfigError> {
    let doc = first_document(text.as_bytes())?;
    let tree: Node = serde_json::from_str(doc).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut problems = Vec::new();
    walk(&tree, &Shape::Obj(SPEC), "", &mut problems);
    if !problems.is_empty() {
        let more = if problems.len() > MAX_REPORTED {
            format!(" (and {} more)", problems.len() - MAX_REPORTED)
        } else {
            String::new()
        };
        problems.truncate(MAX_REPORTED);
        return Err(ConfigError::Ambiguous(format!(
            "{}{more}",
            problems.join("; ")
        )));
    }
    let config: OciConfig =
        serde_json::from_str(doc).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    duplicate_namespaces(&config)?;
    Ok(config)
}

/// The first JSON document of `bytes` as text (what runc decodes); anything after it is
/// dropped. Not UTF-8 inside the document, or no complete document: an error.
pub fn first_document(bytes: &[u8]) -> Result<&str, ConfigError> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<de::IgnoredAny>();
    match stream.next() {
        None => Err(ConfigError::NoDocument),
        Some(Err(e)) => Err(ConfigError::Invalid(e.to_string())),
        Some(Ok(_)) => {
            let end = stream.byte_offset();
            let doc = bytes.get(..end).unwrap_or(bytes);
            std::str::from_utf8(doc).map_err(|e| ConfigError::NotUtf8(e.to_string()))
        }
    }
}

fn duplicate_namespaces(config: &OciConfig) -> Result<(), ConfigError> {
    let Some(linux) = &config.linux else {
        return Ok(());
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut twice: Vec<String> = Vec::new();
    for ns in &linux.namespaces {
        if seen.contains(&ns.kind.as_str()) {
            if !twice.contains(&ns.kind) {
                twice.push(ns.kind.clone());
            }
        } else {
            seen.push(&ns.kind);
        }
    }
    if twice.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = twice.iter().map(|k| format!("`{k}`")).collect();
    Err(ConfigError::Ambiguous(format!(
        "`linux.namespaces` lists the {} namespace more than once (runc refuses the file, crun joins the last entry)",
        list.join(", ")
    )))
}

// ----------------------------------------------------------------------------------------
// The document as written: every key in order, duplicates kept
// ----------------------------------------------------------------------------------------

#[derive(Debug)]
enum Node {
    Scalar,
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Node::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Node::Obj(entries))
    }
}

// ----------------------------------------------------------------------------------------
// The runtime-spec schema (specs-go/config.go, runtime-spec v1.2): every object's keys
// ----------------------------------------------------------------------------------------

/// What a key holds.
enum Shape {
    /// A string, number, boolean, or a value no runtime reads on Linux.
    Leaf,
    /// An object with these keys (Go struct fields: folding applies).
    Obj(&'static [(&'static str, Shape)]),
    /// An array of these.
    Arr(&'static Shape),
    /// A map with free keys (Go map: exact keys) to these.
    Map(&'static Shape),
}

use Shape::{Arr, Leaf, Map, Obj};

const SPEC: &[(&str, Shape)] = &[
    ("ociVersion", Leaf),
    ("process", Obj(PROCESS)),
    ("root", Obj(&[("path", Leaf), ("readonly", Leaf)])),
    ("hostname", Leaf),
    ("domainname", Leaf),
    ("mounts", Arr(&Obj(MOUNT))),
    ("hooks", Obj(HOOKS)),
    ("annotations", Map(&Leaf)),
    ("linux", Obj(LINUX)),
    ("solaris", Leaf),
    ("windows", Leaf),
    ("vm", Leaf),
    ("zos", Leaf),
];

const PROCESS: &[(&str, Shape)] = &[
    ("terminal", Leaf),
    ("consoleSize", Obj(&[("height", Leaf), ("width", Leaf)])),
    (
        "user",
        Obj(&[
            ("uid", Leaf),
            ("gid", Leaf),
            ("umask", Leaf),
            ("additionalGids", Leaf),
            ("username", Leaf),
        ]),
    ),
    ("args", Leaf),
    ("commandLine", Leaf),
    ("env", Leaf),
    ("cwd", Leaf),
    (
        "capabilities",
        Obj(&[
            ("bounding", Leaf),
            ("effective", Leaf),
            ("inheritable", Leaf),
            ("permitted", Leaf),
            ("ambient", Leaf),
        ]),
    ),
    (
        "rlimits",
        Arr(&Obj(&[("type", Leaf), ("hard", Leaf), ("soft", Leaf)])),
    ),
    ("noNewPrivileges", Leaf),
    ("apparmorProfile", Leaf),
    ("oomScoreAdj", Leaf),
    (
        "scheduler",
        Obj(&[
            ("policy", Leaf),
            ("nice", Leaf),
            ("priority", Leaf),
            ("flags", Leaf),
            ("runtime", Leaf),
            ("deadline", Leaf),
            ("period", Leaf),
        ]),
    ),
    ("selinuxLabel", Leaf),
    ("ioPriority", Obj(&[("class", Leaf), ("priority", Leaf)])),
];

const ID_MAPPING: Shape = Arr(&Obj(&[
    ("containerID", Leaf),
    ("hostID", Leaf),
    ("size", Leaf),
]));

const MOUNT: &[(&str, Shape)] = &[
    ("destination", Leaf),
    ("type", Leaf),
    ("source", Leaf),
    ("options", Leaf),
    ("uidMappings", ID_MAPPING),
    ("gidMappings", ID_MAPPING),
];

const HOOK: Shape = Arr(&Obj(&[
    ("path", Leaf),
    ("args", Leaf),
    ("env", Leaf),
    ("timeout", Leaf),
]));

const HOOKS: &[(&str, Shape)] = &[
    ("prestart", HOOK),
    ("createRuntime", HOOK),
    ("createContainer", HOOK),
    ("startContainer", HOOK),
    ("poststart", HOOK),
    ("poststop", HOOK),
];

const LINUX: &[(&str, Shape)] = &[
    ("uidMappings", ID_MAPPING),
    ("gidMappings", ID_MAPPING),
    ("sysctl", Map(&Leaf)),
    ("resources", Obj(RESOURCES)),
    ("cgroupsPath", Leaf),
    ("namespaces", Arr(&Obj(&[("type", Leaf), ("path", Leaf)]))),
    ("devices", Arr(&Obj(DEVICE))),
    ("seccomp", Obj(SECCOMP)),
    ("rootfsPropagation", Leaf),
    ("maskedPaths", Leaf),
    ("readonlyPaths", Leaf),
    ("mountLabel", Leaf),
    (
        "intelRdt",
        Obj(&[
            ("closID", Leaf),
            ("schemata", Leaf),
            ("l3CacheSchema", Leaf),
            ("memBwSchema", Leaf),
            ("enableCMT", Leaf),
            ("enableMBM", Leaf),
        ]),
    ),
    ("personality", Obj(&[("domain", Leaf), ("flags", Leaf)])),
    (
        "timeOffsets",
        Map(&Obj(&[("secs", Leaf), ("nanosecs", Leaf)])),
    ),
];

const DEVICE: &[(&str, Shape)] = &[
    ("path", Leaf),
    ("type", Leaf),
    ("major", Leaf),
    ("minor", Leaf),
    ("fileMode", Leaf),
    ("uid", Leaf),
    ("gid", Leaf),
];

const BLOCK_DEVICE_WEIGHT: Shape = Arr(&Obj(&[
    ("major", Leaf),
    ("minor", Leaf),
    ("weight", Leaf),
    ("leafWeight", Leaf),
]));

const BLOCK_DEVICE_RATE: Shape = Arr(&Obj(&[("major", Leaf), ("minor", Leaf), ("rate", Leaf)]));

const RESOURCES: &[(&str, Shape)] = &[
    (
        "devices",
        Arr(&Obj(&[
            ("allow", Leaf),
            ("type", Leaf),
            ("major", Leaf),
            ("minor", Leaf),
            ("access", Leaf),
        ])),
    ),
    (
        "memory",
        Obj(&[
            ("limit", Leaf),
            ("reservation", Leaf),
            ("swap", Leaf),
            ("kernel", Leaf),
            ("kernelTCP", Leaf),
            ("swappiness", Leaf),
            ("disableOOMKiller", Leaf),
            ("useHierarchy", Leaf),
            ("checkBeforeUpdate", Leaf),
        ]),
    ),
    (
        "cpu",
        Obj(&[
            ("shares", Leaf),
            ("quota", Leaf),
            ("burst", Leaf),
            ("period", Leaf),
            ("realtimeRuntime", Leaf),
            ("realtimePeriod", Leaf),
            ("cpus", Leaf),
            ("mems", Leaf),
            ("idle", Leaf),
        ]),
    ),
    ("pids", Obj(&[("limit", Leaf)])),
    (
        "blockIO",
        Obj(&[
            ("weight", Leaf),
            ("leafWeight", Leaf),
            ("weightDevice", BLOCK_DEVICE_WEIGHT),
            ("throttleReadBpsDevice", BLOCK_DEVICE_RATE),
            ("throttleWriteBpsDevice", BLOCK_DEVICE_RATE),
            ("throttleReadIOPSDevice", BLOCK_DEVICE_RATE),
            ("throttleWriteIOPSDevice", BLOCK_DEVICE_RATE),
        ]),
    ),
    (
        "hugepageLimits",
        Arr(&Obj(&[("pageSize", Leaf), ("limit", Leaf)])),
    ),
    (
        "network",
        Obj(&[
            ("classID", Leaf),
            (
                "priorities",
                Arr(&Obj(&[("name", Leaf), ("priority", Leaf)])),
            ),
        ]),
    ),
    (
        "rdma",
        Map(&Obj(&[("hcaHandles", Leaf), ("hcaObjects", Leaf)])),
    ),
    ("unified", Map(&Leaf)),
];

const SECCOMP: &[(&str, Shape)] = &[
    ("defaultAction", Leaf),
    ("defaultErrnoRet", Leaf),
    ("architectures", Leaf),
    ("flags", Leaf),
    ("listenerPath", Leaf),
    ("listenerMetadata", Leaf),
    (
        "syscalls",
        Arr(&Obj(&[
            ("names", Leaf),
            ("action", Leaf),
            ("errnoRet", Leaf),
            (
                "args",
                Arr(&Obj(&[
                    ("index", Leaf),
                    ("value", Leaf),
                    ("valueTwo", Leaf),
                    ("op", Leaf),
                ])),
            ),
        ])),
    ),
];

// ----------------------------------------------------------------------------------------
// The walk
// ----------------------------------------------------------------------------------------

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(node: &Node, shape: &Shape, path: &str, problems: &mut Vec<String>) {
    match (node, shape) {
        (Node::Obj(entries), Obj(fields)) => {
            for (i, (key, value)) in entries.iter().enumerate() {
                let at = join(path, key);
                let exact = fields.iter().find(|(name, _)| *name == key.as_str());
                if let Some((_, child)) = exact {
                    if entries.iter().take(i).any(|(k, _)| k == key) {
                        problems.push(format!(
                            "`{at}` is given more than once (runc takes the last, crun the first)"
                        ));
                    }
                    walk(value, child, &at, problems);
                } else if let Some((name, _)) =
                    fields.iter().find(|(name, _)| go_fold_eq(key, name))
                {
                    problems.push(format!(
                        "`{at}` is not the key `{}` but matches it case-insensitively (runc reads it as `{name}`, crun and Palisade ignore it)",
                        join(path, name)
                    ));
                }
            }
        }
        (Node::Obj(entries), Map(child)) => {
            for (i, (key, value)) in entries.iter().enumerate() {
                let at = join(path, key);
                if entries.iter().take(i).any(|(k, _)| k == key) {
                    problems.push(format!(
                        "`{at}` is given more than once (runc takes the last, crun the first)"
                    ));
                }
                walk(value, child, &at, problems);
            }
        }
        (Node::Arr(items), Arr(child)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, child, &format!("{path}[{i}]"), problems);
            }
        }
        // A value of another type than the schema's: the typed decoding reports it.
        _ => {}
    }
}

/// Whether Go's `encoding/json` would match the JSON key `key` to the struct field `name`
/// (ASCII, as every runtime-spec key is): `bytes.EqualFold`, i.e. Unicode simple folding.
/// The only non-ASCII characters whose fold orbit holds an ASCII letter are `ſ` (U+017F,
/// with `s`/`S`) and `K` (U+212A, with `k`/`K`); `İ` and `ı` fold to themselves (Go's
/// `unicode` tests, `simpleFoldTests`).
fn go_fold_eq(key: &str, name: &str) -> bool {
    let mut k = key.chars();
    let mut n = name.chars();
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) => {
                let a = match a {
                    '\u{017F}' => 'S',
                    '\u{212A}' => 'K',
                    c if c.is_ascii() => c.to_ascii_uppercase(),
                    _ => return false,
                };
                if a != b.to_ascii_uppercase() {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
