//! The command line: `palisade <command>` with clap's derive API.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use palisade_engine::{Options, PathNormalization};

/// Palisade: identity-based runtime access control for containerised workloads.
///
/// Reads Istio AuthorizationPolicies, Kubernetes NetworkPolicies and a Palisade Inventory
/// (YAML; directories are read recursively for `*.yaml` and `*.yml`), checks them, decides
/// requests and builds the bundles the Envoy, runtime and browser hosts load.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How results and errors are printed.
    #[command(flatten)]
    pub formats: Formats,
}

/// `--output` and `--error-format`, accepted by every command.
#[derive(Debug, Clone, Copy, Args)]
pub struct Formats {
    /// How results are printed (on standard output).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,
    /// How errors are printed (on standard error).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub error_format: Format,
}

/// A rendering: for people or for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people; errors show the offending source with its field path.
    Human,
    /// One JSON document.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and compile policies and inventory, and summarise what applies to which
    /// workload. Exit 0 when valid, 2 when not (every problem is printed).
    Check {
        /// Policy and inventory files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Decide requests against policies. Exit 0 when every request is allowed, 1 when any is
    /// denied, 2 on invalid input, 4 when none is denied but some are pending on an external
    /// authorizer (a CUSTOM rule matched and the request has no `extAuthz` answer).
    Eval {
        /// Policy and inventory files or directories.
        #[arg(long, short = 'p', required = true, num_args = 1.., value_name = "PATH")]
        policy: Vec<PathBuf>,
        /// The request(s) as JSON: one object, an array, or JSON lines; `-` reads standard
        /// input. An item may also be `{"name": ..., "request": {...}, "expect": "allow"}`.
        #[arg(long, short = 'r', value_name = "FILE|-")]
        request: String,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Compile policies and inventory into a bundle the hosts load.
    Compile {
        /// Policy and inventory files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Where to write the bundle.
        #[arg(long, short = 'o', value_name = "BUNDLE")]
        bundle: PathBuf,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Verify a bundle and summarise what it holds. Exit 2 when it is not a valid bundle.
    Inspect {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
    /// Decide the built-in example's sample requests and print them as a table.
    Demo,
    /// Replay recorded traffic (Envoy access logs, Hubble flows, request records) through
    /// the proxy-wasm plugin's `.wasm` and the native engine; report counts per rule, every
    /// wasm/native disagreement and every record decided unlike the live system. Exit 0 when
    /// the `.wasm` and the native engine agree, 3 when they disagree, 2 on invalid input.
    Replay(crate::replay::ReplayArgs),
    /// Write the Inventory document from Kubernetes objects (`kubectl get ... -o json`) and
    /// container inspect output; report every object not mapped on standard error.
    Inventory(crate::inventory::InventoryArgs),
}

/// The mesh settings that change how policies are read ([`Options`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Mesh options")]
pub struct MeshArgs {
    /// Policies in this namespace apply mesh-wide [default: istio-system].
    #[arg(long, value_name = "NAMESPACE")]
    pub root_namespace: Option<String>,
    /// The mesh's trust domain [default: cluster.local].
    #[arg(long, value_name = "DOMAIN")]
    pub trust_domain: Option<String>,
    /// Another trust domain treated as the same one (repeatable).
    #[arg(long = "trust-domain-alias", value_name = "DOMAIN")]
    pub trust_domain_aliases: Vec<String>,
    /// How request paths are normalised before matching [default: BASE].
    #[arg(long, value_enum, value_name = "MODE")]
    pub path_normalization: Option<Normalization>,
    /// A meshConfig YAML file: its `extensionProviders` (`envoyExtAuthzHttp`,
    /// `envoyExtAuthzGrpc`) declare the external authorizers CUSTOM policies name; other
    /// meshConfig fields are ignored.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// What a hostNetwork pod's connections are to NetworkPolicy [default: node].
    #[arg(long, value_enum, value_name = "AS")]
    pub host_network_pods: Option<HostNetworkAs>,
    /// Decide connections from a pod's own node by its NetworkPolicies too (Kubernetes always
    /// lets them in).
    #[arg(long)]
    pub isolate_from_own_node: bool,
}

/// What a hostNetwork pod's connections are ([`palisade_engine::HostNetworkPods`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostNetworkAs {
    /// Node traffic: selectors ignore the pod, ipBlocks see the node's address (the common
    /// implementation, as the Kubernetes documentation says).
    Node,
    /// The pod, when the request names it.
    Pod,
}

impl MeshArgs {
    /// The engine options: the defaults, overridden by the flags given; the extension
    /// providers read from `--mesh-config`.
    pub fn options(&self) -> Result<Options, crate::report::Failure> {
        let mut o = Options::default();
        if let Some(ns) = &self.root_namespace {
            o.root_namespace.clone_from(ns);
        }
        if let Some(td) = &self.trust_domain {
            o.trust_domain.clone_from(td);
        }
        o.trust_domain_aliases
            .clone_from(&self.trust_domain_aliases);
        if let Some(n) = self.path_normalization {
            o.path_normalization = n.into();
        }
        if let Some(path) = &self.mesh_config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                crate::report::Failure::message(format!("cannot read `{}`: {e}", path.display()))
            })?;
            let file = palisade_engine::SourceFile::new(path.display().to_string(), text);
            o.extension_providers = palisade_engine::extauthz::read_mesh_config(&file)
                .map_err(|e| crate::report::Failure::invalid(e, std::slice::from_ref(&file)))?;
        }
        if let Some(h) = self.host_network_pods {
            o.node_traffic.host_network_pods = match h {
                HostNetworkAs::Node => palisade_engine::HostNetworkPods::Node,
                HostNetworkAs::Pod => palisade_engine::HostNetworkPods::Pod,
            };
        }
        if self.isolate_from_own_node {
            o.node_traffic.allow_own_node = false;
        }
        Ok(o)
    }
}

/// Istio's `pathNormalization` modes, spelled as Istio spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Normalization {
    /// The path as sent.
    #[value(name = "NONE")]
    None,
    /// RFC 3986 normalisation, unreserved decoding, `\` to `/` (Istio's default).
    #[value(name = "BASE")]
    Base,
    /// `BASE`, then `//` to `/`.
    #[value(name = "MERGE_SLASHES")]
    MergeSlashes,
    /// Decode `%2F` and `%5C` first, then `MERGE_SLASHES`.
    #[value(name = "DECODE_AND_MERGE_SLASHES")]
    DecodeAndMergeSlashes,
}

impl From<Normalization> for PathNormalization {
    fn from(n: Normalization) -> Self {
        match n {
            Normalization::None => PathNormalization::None,
            Normalization::Base => PathNormalization::Base,
            Normalization::MergeSlashes => PathNormalization::MergeSlashes,
            Normalization::DecodeAndMergeSlashes => PathNormalization::DecodeAndMergeSlashes,
        }
    }
}
