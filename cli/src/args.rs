//! The command line: `palisade <command>` with clap's derive API.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use palisade_engine::PathNormalization;
use palisade_traffic::Format as TrafficFormat;

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
        #[command(flatten)]
        signing: SignArgs,
    },
    /// Verify a bundle and summarise what it holds: its revision, scope, signer and inputs,
    /// and its policies. Exit 2 when it is not a valid bundle, or when `--trusted-key` is
    /// given and the bundle is not signed by one of those keys.
    Inspect {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// A key the bundle must be signed by, `ID=PUBLIC_KEY` (base64, as `keygen` prints
        /// it); repeat for several.
        #[arg(long = "trusted-key", value_name = "ID=KEY")]
        trusted_keys: Vec<String>,
    },
    /// Make an ed25519 signing key for bundles: writes `PREFIX.key` (PKCS#8 PEM, mode 0600)
    /// and `PREFIX.pub` (the public key, base64, as hosts take it in `trustedKeys`).
    Keygen {
        /// The path prefix of the two files.
        #[arg(long, short = 'o', value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Make a DSSE envelope holding an in-toto Statement v1 with SLSA provenance v1 for an
    /// image digest, signed with an ed25519 key (for tests and examples; a pipeline's builder
    /// makes its own). See docs/provenance.md.
    Attest(AttestArgs),
    /// Verify a provenance envelope against trusted keys and print what it attests. Exit 0
    /// when it verifies (and names `--image-digest`, from `--builder` and `--source` when
    /// given), 2 when not.
    Verify(VerifyArgs),
    /// Decide the built-in example's sample requests and print them as a table.
    Demo,
    /// Replay recorded traffic (Envoy access logs, Hubble flows, request records) through
    /// the proxy-wasm plugin's `.wasm` and the native engine; report counts per rule, every
    /// wasm/native disagreement and every record decided unlike the live system. Exit 0 when
    /// the `.wasm` and the native engine agree, 3 when they disagree, 2 on invalid input.
    Replay(ReplayArgs),
    /// Write the Inventory document from Kubernetes objects (`kubectl get ... -o json`) and
    /// container inspect output; report every object not mapped on standard error.
    Inventory(InventoryArgs),
    /// Watch policies and inventory, recompile and sign on every change, and serve each
    /// scope's bundle over HTTP (`GET /v1/bundles/{scope}` with ETag and long polling,
    /// `/v1/status`, `/metrics`). Runs until interrupted.
    Serve(ServeArgs),
}

/// `palisade serve`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Policy and inventory files or directories (watched).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Where to listen for HTTP.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    pub http: std::net::SocketAddr,
    /// Sign every bundle with this ed25519 key (PKCS#8 PEM, from `palisade keygen`).
    #[arg(long, value_name = "KEY", requires = "key_id")]
    pub sign: Option<PathBuf>,
    /// The id hosts know the key by (their `trustedKeys`).
    #[arg(long, value_name = "ID", requires = "sign")]
    pub key_id: Option<String>,
    /// A scope to serve: `mesh`, `namespace:NS` or `workload:NS/NAME` (repeat) [default: mesh].
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// How long the inputs must be quiet after a change before recompiling, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub debounce_ms: u64,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// How `compile` signs and scopes a bundle.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Signing")]
pub struct SignArgs {
    /// Sign the bundle with this ed25519 key (PKCS#8 PEM, from `palisade keygen` or `openssl
    /// genpkey -algorithm ed25519`).
    #[arg(long, value_name = "KEY", requires = "key_id")]
    pub sign: Option<PathBuf>,
    /// The id hosts know the key by (their `trustedKeys`).
    #[arg(long, value_name = "ID", requires = "sign")]
    pub key_id: Option<String>,
    /// Whom the bundle is for: `mesh` (default), `namespace:NS` or `workload:NS/NAME`. A
    /// host refuses a bundle whose scope does not cover what it enforces.
    #[arg(long, value_name = "SCOPE", default_value = "mesh")]
    pub scope: String,
}

/// The mesh settings that change how policies are read ([`palisade_engine::Options`]).
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

/// `palisade replay`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Policy files or directories (YAML, read as `check` reads them).
    #[arg(long, short = 'p', required = true, num_args = 1.., value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// The recorded traffic: JSON lines.
    #[arg(long, short = 't', value_name = "FILE")]
    pub traffic: PathBuf,
    /// The recording's format [default: auto, from the first line].
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// The proxy-wasm plugin [default: `$PALISADE_PROXY_WASM`, else the plugin built beside
    /// this binary or in `$CARGO_TARGET_DIR`: `<target>/wasm32-wasip1/plugin/palisade_proxy_wasm.wasm`].
    #[arg(long, value_name = "PLUGIN.wasm")]
    pub wasm: Option<PathBuf>,
    /// An inventory file (workloads, their addresses), added to the policies: destinations
    /// are found by address in it.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Decide every record as received by this workload (`<namespace>/<name>` in the
    /// inventory), whatever its destination.
    #[arg(long, value_name = "NS/NAME")]
    pub workload: Option<String>,
    /// Skip lines that do not parse (they are counted and listed) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// What of the `.wasm` is compared with the native engine: `outcome` — the verdict, local
    /// reply and counters, as Envoy shows them (fast); `decision` — the full decision read
    /// back from the plugin's log line (step, dry-run results, audit: slower).
    #[arg(long, value_enum, default_value_t = Compare::Outcome)]
    pub compare: Compare,
    /// Also list every record: the request, the plugin's and the native engine's verdict and
    /// deciding rule, and the live outcome where the recording has one.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the first line.
    Auto,
    /// Envoy access-log JSON lines (the format in `envoy/`).
    Envoy,
    /// `hubble observe -o json` lines.
    Hubble,
    /// Palisade request records.
    Records,
}

impl FormatArg {
    /// The recording's format, or `None`: found from the first line.
    pub fn traffic(self) -> Option<TrafficFormat> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Envoy => Some(TrafficFormat::Envoy),
            FormatArg::Hubble => Some(TrafficFormat::Hubble),
            FormatArg::Records => Some(TrafficFormat::Records),
        }
    }
}

/// `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// Verdict, local reply and counters, as Envoy shows them.
    Outcome,
    /// The full decision, from the plugin's log line.
    Decision,
}

/// `palisade attest`.
#[derive(Debug, Clone, Args)]
pub struct AttestArgs {
    /// The ed25519 signing key (PKCS#8 PEM, from `palisade keygen`).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The id verifiers know the key by (the signature's `keyid`).
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// The image's manifest digest, `sha256:<64 hex>`: the statement's subject.
    #[arg(long, value_name = "DIGEST")]
    pub image_digest: String,
    /// The subject's name (the image's repository).
    #[arg(long, value_name = "NAME", default_value = "_")]
    pub name: String,
    /// `runDetails.builder.id`.
    #[arg(long, value_name = "ID")]
    pub builder: String,
    /// The source repository and the commit built, `URI@COMMIT`.
    #[arg(long, value_name = "URI@REV")]
    pub source: String,
    /// The ref the commit was resolved from.
    #[arg(long = "ref", value_name = "REF", default_value = "refs/heads/main")]
    pub git_ref: String,
    /// Where to write the envelope (JSON).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
}

/// `palisade verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The envelope (JSON).
    #[arg(value_name = "ENVELOPE")]
    pub envelope: PathBuf,
    /// A key the envelope may be signed by, `ID=PUBLIC_KEY` (base64); repeat for several.
    #[arg(long = "trusted-key", value_name = "ID=KEY", required = true)]
    pub trusted_keys: Vec<String>,
    /// The image digest the statement must name.
    #[arg(long, value_name = "DIGEST")]
    pub image_digest: Option<String>,
    /// An allowed builder id (exact); repeat for several.
    #[arg(long = "builder", value_name = "ID")]
    pub builders: Vec<String>,
    /// An allowed source, `REPOSITORY` or `REPOSITORY@REF` (exact); repeat for several.
    #[arg(long = "source", value_name = "URI")]
    pub sources: Vec<String>,
}

/// `palisade inventory`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Kubernetes objects: `kubectl get namespaces,pods,serviceaccounts,services,deployments,
    /// replicasets,statefulsets,daemonsets,jobs,cronjobs -A -o json` (or `-o yaml`, or
    /// several files); `-` reads standard input.
    #[arg(value_name = "KUBERNETES_OBJECTS")]
    pub kubernetes: Vec<PathBuf>,
    /// `podman inspect` / `docker inspect` (or `podman ps --format json`) output (repeatable).
    #[arg(long, value_name = "FILE")]
    pub containers: Vec<PathBuf>,
    /// Ask the host's Podman for its containers (`podman ps -a -q`, `podman inspect`).
    #[arg(long)]
    pub podman: bool,
    /// The namespace of containers whose labels name none.
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub container_namespace: String,
    /// The document's `metadata.name`.
    #[arg(long, value_name = "NAME", default_value = "inventory")]
    pub name: String,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = DocumentFormat::Yaml)]
    pub format: DocumentFormat,
    /// Where to write the document [default: standard output].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// YAML (with images and findings as comments) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocumentFormat {
    /// YAML, as `docs/inventory.md` shows it.
    Yaml,
    /// JSON (the same document).
    Json,
}
