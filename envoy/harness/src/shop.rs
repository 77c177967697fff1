//! `examples/shop` in a real Envoy 1.40 with the Palisade plugin: the setup shared by the
//! end-to-end test (`tests/shop_e2e.rs`) and the host-fidelity test (`tests/host_fidelity.rs`).
//!
//! One Envoy, listeners from a watched file (LDS, `path_config_source` + `watched_directory`,
//! updated by atomic rename) for five shop workloads — the ingress gateway (:8080), cart
//! (:8080), catalog (:9080), payments api (:8443, its policy as a bundle compiled by the engine)
//! and postgres (:5432, TCP through the network filter) — each on its own loopback address with
//! the shop's policies and its `workload`, plus two listeners running a trapping module. Clients
//! connect from the address the (test) inventory gives their workload ([`WORKLOAD_IPS`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::access_log;
use crate::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use crate::certs::Pki;
use crate::client::{HttpRequest, Transport, send_http_full};
use crate::compare::listen_address;
use crate::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use crate::error::{Context, Error, Result};
use crate::jwt::base64url;
use crate::plugin::{build_plugin, http_filter, network_filter};

/// The repository root (this crate is `envoy/harness`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/shop`.
pub fn shop_dir() -> PathBuf {
    repo_root().join("examples").join("shop")
}

/// The inventory's pod IPs and the loopback source address each workload's client uses
/// here; the test inventory is `examples/shop/inventory.yaml` with these swapped in, so that
/// NetworkPolicy finds the source pod of a connection by its address, as in a cluster.
pub const WORKLOAD_IPS: &[(&str, &str, [u8; 4])] = &[
    ("ingressgateway", "10.0.0.10", [127, 0, 0, 10]),
    ("frontend", "10.1.0.10", [127, 0, 0, 11]),
    ("cart", "10.1.0.20", [127, 0, 0, 12]),
    ("catalog", "10.1.0.30", [127, 0, 0, 13]),
    ("api", "10.2.0.10", [127, 0, 0, 14]),
    ("processor", "10.2.0.20", [127, 0, 0, 15]),
    ("postgres", "10.3.0.10", [127, 0, 0, 16]),
];
/// A client outside the mesh: the Internet through the gateway.
pub const INTERNET: [u8; 4] = [127, 0, 0, 70];
/// A client outside the mesh: a pod without a sidecar.
pub const NO_SIDECAR: [u8; 4] = [127, 0, 0, 99];

/// The loopback address of a workload's client.
pub fn workload_ip(name: &str) -> Result<Ipv4Addr> {
    WORKLOAD_IPS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, ip)| Ipv4Addr::from(*ip))
        .ok_or_else(|| Error(format!("no workload `{name}` in WORKLOAD_IPS")))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))
}

/// The inventory with loopback addresses, then every policy file (sorted), as one multi-doc
/// YAML string: the plugin's inline `policy`.
pub fn shop_policy() -> Result<String> {
    let mut inventory = read(&shop_dir().join("inventory.yaml"))?;
    for (name, from, to) in WORKLOAD_IPS {
        let (from, to) = (
            format!("ips: [{from}]"),
            format!("ips: [{}]", Ipv4Addr::from(*to)),
        );
        if !inventory.contains(&from) {
            return Err(Error(format!("{name}: no `{from}` in inventory.yaml")));
        }
        inventory = inventory.replace(&from, &to);
    }
    let dir = shop_dir().join("policies");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
        files.push(e.context(|| format!("listing {}", dir.display()))?.path());
    }
    files.sort();
    let mut docs = vec![inventory];
    for f in &files {
        docs.push(read(f)?);
    }
    Ok(docs.join("\n---\n"))
}

/// The same policy compiled by the engine into a bundle (base64), as `palisade compile` does.
pub fn shop_bundle(policy: &str) -> Result<String> {
    let set = palisade_engine::load(&[palisade_engine::SourceFile::new("shop.yaml", policy)])
        .map_err(|e| Error(format!("loading the shop policy: {e:?}")))?;
    let engine = palisade_engine::compile(&set, &palisade_engine::Options::default())
        .map_err(|e| Error(format!("compiling the shop policy: {e:?}")))?;
    let bytes = palisade_engine::encode_bundle(&engine)
        .map_err(|e| Error(format!("encoding the bundle: {e:?}")))?;
    // Standard base64 with padding, from the harness's base64url.
    let mut b64 = base64url(&bytes).replace('-', "+").replace('_', "/");
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    Ok(b64)
}

/// The same policy compiled into a bundle for `scope`, signed by the ed25519 key whose seed is
/// `[seed; 32]` under `key_id`; with `flip_signature`, one signature byte flipped. Returns the
/// bundle (base64) and the plugin's `trustedKeys` entry for that key.
pub fn shop_bundle_signed(
    policy: &str,
    seed: u8,
    key_id: &str,
    scope: palisade_engine::Scope,
    flip_signature: bool,
) -> Result<(String, Value)> {
    use palisade_engine::bundle::{parts, public_key_base64};
    let set = palisade_engine::load(&[palisade_engine::SourceFile::new("shop.yaml", policy)])
        .map_err(|e| Error(format!("loading the shop policy: {e:?}")))?;
    let engine = palisade_engine::compile(&set, &palisade_engine::Options::default())
        .map_err(|e| Error(format!("compiling the shop policy: {e:?}")))?;
    let signer = palisade_engine::BundleSigner {
        key_id: key_id.into(),
        key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
    };
    let info = palisade_engine::BundleInfo {
        scope,
        inputs: vec![],
    };
    let mut bytes = palisade_engine::encode_signed(&engine, &info, Some(&signer))
        .map_err(|e| Error(format!("encoding the bundle: {e:?}")))?;
    if flip_signature {
        let payload = parts(&bytes)
            .map_err(|e| Error(format!("reading the bundle back: {e}")))?
            .payload_len();
        let at = bytes.len() - payload - 64;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 1;
        }
    }
    let mut b64 = base64url(&bytes).replace('-', "+").replace('_', "/");
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    let key = json!({"keyId": key_id, "publicKey": public_key_base64(&signer.key.verifying_key())});
    Ok((b64, key))
}

/// A free TCP port on 127.0.0.1.
/// A free TCP port on 127.0.0.1 (see [`free_port_on`]).
pub fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free TCP port on `ip`, probed on that very address, and never the same port twice in
/// one process: the kernel may hand a just-released port out again, and two listeners of one
/// Envoy on the same address would refuse the configuration.
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context(|| format!("finding a free port on {ip}"))?;
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(Error("no fresh free port after 100 tries".into()))
}

/// A module that speaks just enough of the proxy-wasm ABI (0.2.1) for Envoy to load and
/// configure it, and then traps (`unreachable`) on the first request headers or downstream
/// data. Encoded here so the test needs no WAT toolchain; as WAT:
///
/// ```text
/// (module (memory (export "memory") 1)
///   (func (export "proxy_abi_version_0_2_1"))
///   (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
///   (func (export "proxy_on_context_create") (param i32 i32))
///   (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
///   (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
///   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)
///   (func (export "proxy_on_new_connection") (param i32) (result i32) i32.const 0)
///   (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) unreachable)
///   (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
///   (func (export "proxy_on_delete") (param i32)))
/// ```
pub fn trapping_module() -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn vector(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        leb(items.len(), &mut out);
        for i in items {
            out.extend(i);
        }
        out
    }
    fn section(id: u8, content: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(content.len(), out);
        out.extend(content);
    }
    const I32: u8 = 0x7f;
    let types: Vec<Vec<u8>> = vec![
        vec![0x60, 0, 0],                     // 0: () -> ()
        vec![0x60, 1, I32, 1, I32],           // 1: (i32) -> i32
        vec![0x60, 2, I32, I32, 0],           // 2: (i32, i32) -> ()
        vec![0x60, 2, I32, I32, 1, I32],      // 3: (i32, i32) -> i32
        vec![0x60, 3, I32, I32, I32, 1, I32], // 4: (i32, i32, i32) -> i32
        vec![0x60, 1, I32, 0],                // 5: (i32) -> ()
    ];
    let (unreachable, i32_const) = (0x00u8, 0x41u8);
    let funcs: Vec<(&str, u8, Vec<u8>)> = vec![
        ("proxy_abi_version_0_2_1", 0, vec![]),
        ("proxy_on_memory_allocate", 1, vec![i32_const, 0x80, 0x08]),
        ("proxy_on_context_create", 2, vec![]),
        ("proxy_on_vm_start", 3, vec![i32_const, 1]),
        ("proxy_on_configure", 3, vec![i32_const, 1]),
        ("proxy_on_request_headers", 4, vec![unreachable]),
        ("proxy_on_new_connection", 1, vec![i32_const, 0]),
        ("proxy_on_downstream_data", 4, vec![unreachable]),
        ("proxy_on_done", 1, vec![i32_const, 1]),
        ("proxy_on_delete", 5, vec![]),
    ];
    let name = |s: &str| {
        let mut out = Vec::new();
        leb(s.len(), &mut out);
        out.extend(s.as_bytes());
        out
    };
    let mut exports = vec![[name("memory"), vec![0x02, 0]].concat()];
    let mut bodies = Vec::new();
    for (i, (export, _, code)) in funcs.iter().enumerate() {
        exports.push([name(export), vec![0x00, i as u8]].concat());
        let body = [vec![0u8], code.clone(), vec![0x0b]].concat();
        let mut entry = Vec::new();
        leb(body.len(), &mut entry);
        entry.extend(body);
        bodies.push(entry);
    }
    let mut m = b"\0asm".to_vec();
    m.extend(1u32.to_le_bytes());
    section(1, vector(&types), &mut m);
    section(
        3,
        vector(&funcs.iter().map(|f| vec![f.1]).collect::<Vec<_>>()),
        &mut m,
    );
    section(5, vector(&[vec![0x00, 1]]), &mut m);
    section(7, vector(&exports), &mut m);
    section(10, vector(&bodies), &mut m);
    m
}

/// The listeners, written to a watched directory for Envoy's file-based LDS.
#[derive(Debug)]
pub struct Lds {
    dir: PathBuf,
    version: u32,
}

impl Lds {
    /// The listeners file Envoy watches.
    pub fn file(&self) -> PathBuf {
        self.dir.join("listeners.json")
    }

    /// Writes a new version and moves it into place (Envoy reacts to the rename).
    pub fn push(&mut self, listeners: &[Value]) -> Result<()> {
        self.version += 1;
        let resources: Vec<Value> = listeners
            .iter()
            .map(|l| {
                let mut l = l.clone();
                if let Some(o) = l.as_object_mut() {
                    o.insert(
                        "@type".into(),
                        json!("type.googleapis.com/envoy.config.listener.v3.Listener"),
                    );
                }
                l
            })
            .collect();
        let doc = json!({"version_info": self.version.to_string(), "resources": resources});
        let tmp = self.dir.join("listeners.json.next");
        let bytes = serde_json::to_vec_pretty(&doc).context(|| "serialising listeners".into())?;
        std::fs::write(&tmp, bytes).context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, self.file()).context(|| format!("renaming {}", tmp.display()))
    }
}

/// Where each listener listens: this process's 127/8 block (shared fixed ports stay free of
/// concurrent runs), one address per workload since the gateway and the cart both use 8080.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The ingress gateway, HTTP :8080.
    pub gateway: SocketAddr,
    /// The cart, HTTP :8080.
    pub cart: SocketAddr,
    /// The catalog, HTTP :9080.
    pub catalog: SocketAddr,
    /// The payments api, HTTP :8443 (policy as a bundle).
    pub payments: SocketAddr,
    /// Postgres, TCP :5432.
    pub postgres: SocketAddr,
    /// A trapping module, HTTP.
    pub trap_http: SocketAddr,
    /// A trapping module, TCP.
    pub trap_tcp: SocketAddr,
    /// Free for a listener the test adds.
    pub spare: SocketAddr,
}

impl Addresses {
    fn new() -> Result<Addresses> {
        let [a, b, c, _] = listen_address().octets();
        let at = |d: u8, port: u16| SocketAddr::from(([a, b, c, d], port));
        Ok(Addresses {
            gateway: at(10, 8080),
            cart: at(20, 8080),
            catalog: at(30, 9080),
            payments: at(40, 8443),
            postgres: at(50, 5432),
            trap_http: at(60, free_port()?),
            trap_tcp: at(61, free_port()?),
            spare: at(62, free_port()?),
        })
    }
}

/// A listener named `name` at `addr` (IPv4).
pub fn spec(name: &str, addr: SocketAddr, kind: ListenerKind) -> Result<ListenerSpec> {
    let IpAddr::V4(address) = addr.ip() else {
        return Err(Error(format!("{name}: {addr} is not IPv4")));
    };
    Ok(ListenerSpec {
        name: name.into(),
        address,
        port: addr.port(),
        kind,
    })
}

/// `filter` with its own `vm_id` (a module that must not share the plugin's VM).
pub fn with_vm(mut filter: Value, vm: &str) -> Value {
    if let Some(vm_config) = filter
        .pointer_mut("/typed_config/config/vm_config")
        .and_then(Value::as_object_mut)
    {
        vm_config.insert("vm_id".into(), json!(vm));
    }
    filter
}

/// `{"namespace": ns, "name": name}`.
pub fn workload(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name})
}

/// The plugin configuration JSON (the `StringValue`) of the Palisade filter in a listener,
/// exactly as Envoy gets it.
pub fn plugin_configuration(listener: &Value) -> Option<String> {
    match listener {
        Value::Object(o) => {
            if o.get("root_id").and_then(Value::as_str) == Some("palisade")
                && let Some(v) = o
                    .get("configuration")
                    .and_then(|c| c.get("value"))
                    .and_then(Value::as_str)
            {
                return Some(v.to_string());
            }
            o.values().find_map(plugin_configuration)
        }
        Value::Array(a) => a.iter().find_map(plugin_configuration),
        _ => None,
    }
}

/// Everything the shop's Envoy runs with: the modules, the policy, the certificates, the
/// listeners.
#[derive(Debug)]
pub struct Setup {
    /// The Envoy binary.
    pub envoy_bin: PathBuf,
    /// The plugin's `.wasm`.
    pub wasm: PathBuf,
    /// The trapping module's `.wasm`.
    pub trap_wasm: PathBuf,
    /// The shop policy (inventory and policies, one multi-doc YAML string).
    pub policy: String,
    /// The same, compiled into a bundle (base64).
    pub bundle: String,
    /// The listener addresses.
    pub addrs: Addresses,
    /// The certificates.
    pub pki: Pki,
    /// The upstream TCP listeners proxy to.
    pub echo: EchoServer,
    /// The watched listeners file.
    pub lds: Lds,
    /// The listeners Envoy started with.
    pub listeners: Vec<Value>,
    /// Envoy's log file.
    pub log: PathBuf,
    /// The access log file.
    pub access_log: PathBuf,
    /// The working directory (certificates, configuration, logs).
    pub dir: tempfile::TempDir,
}

/// The shop in a running Envoy, and what the checks need.
#[derive(Debug)]
pub struct Shop {
    /// The running Envoy (dropped before the working directory).
    pub envoy: EnvoyProcess,
    /// What it runs with.
    pub setup: Setup,
}

impl Shop {
    /// Builds the plugin, writes the configuration (validated by `envoy --mode validate`),
    /// starts Envoy and waits until it is ready.
    pub fn start() -> Result<Shop> {
        let root = repo_root();
        let envoy_bin = find_or_install_envoy(&root)?;
        let wasm = build_plugin(&root)?;
        let dir = tempfile::tempdir().context(|| "creating a temporary directory".into())?;
        let pki = Pki::new(dir.path())?;
        let echo = EchoServer::start()?;
        let addrs = Addresses::new()?;
        let policy = shop_policy()?;
        let bundle = shop_bundle(&policy)?;
        let trap_wasm = dir.path().join("trap.wasm");
        std::fs::write(&trap_wasm, trapping_module())
            .context(|| format!("writing {}", trap_wasm.display()))?;
        let lds_dir = dir.path().join("lds");
        std::fs::create_dir_all(&lds_dir).context(|| format!("creating {}", lds_dir.display()))?;
        let mut setup = Setup {
            envoy_bin,
            wasm,
            trap_wasm,
            policy,
            bundle,
            addrs,
            pki,
            echo,
            lds: Lds {
                dir: lds_dir.clone(),
                version: 0,
            },
            listeners: Vec::new(),
            log: dir.path().join("envoy.log"),
            access_log: dir.path().join("access.log"),
            dir,
        };
        let good = setup.listeners_with(setup.cart_filter(&json!({})), vec![])?;
        setup.lds.push(&good)?;
        let mut config = bootstrap(&[], &setup.pki, setup.echo.port);
        set(
            &mut config,
            "node",
            json!({"id": "shop-e2e", "cluster": "shop-e2e"}),
        );
        set(
            &mut config,
            "dynamic_resources",
            json!({"lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": setup.lds.file().display().to_string(),
                    "watched_directory": {"path": lds_dir.display().to_string()},
                },
            }}),
        );
        let config_file = setup.dir.path().join("envoy.json");
        write_json(&config_file, &config)?;
        // The access-log format validates (and every listener with it, in a static copy).
        let mut static_copy = config.clone();
        set(&mut static_copy, "dynamic_resources", json!({}));
        if let Some(resources) = static_copy.get_mut("static_resources") {
            set(resources, "listeners", json!(good));
        }
        let static_file = setup.dir.path().join("envoy-static.json");
        write_json(&static_file, &static_copy)?;
        validate_config(&setup.envoy_bin, &static_file)?;
        setup.listeners = good;
        let envoy = EnvoyProcess::start(&setup.envoy_bin, &config_file, setup.dir.path())?;
        let shop = Shop { envoy, setup };
        shop.admin("/ready")?;
        Ok(shop)
    }

    /// Mutual TLS as `spiffe://cluster.local/<identity>` with this SNI.
    pub fn mtls(&self, identity: &str, sni: &str) -> Result<Transport> {
        Ok(Transport::Tls {
            sni: Some(sni.into()),
            client: Some(
                self.setup
                    .pki
                    .client(&format!("spiffe://cluster.local/{identity}"))?,
            ),
        })
    }
}

impl Setup {
    /// The cart's HTTP filter with the shop policy, its workload and the `extra` fields.
    pub fn cart_filter(&self, extra: &Value) -> Value {
        let mut c = json!({"policy": self.policy, "workload": workload("shop", "cart")});
        for (k, v) in extra.as_object().into_iter().flatten() {
            set(&mut c, k, v.clone());
        }
        http_filter(&self.wasm, &c)
    }

    /// Every listener, with `cart_filter` for the cart and `extra` added, and the access log.
    pub fn listeners_with(
        &self,
        cart_filter: Value,
        extra: Vec<ListenerSpec>,
    ) -> Result<Vec<Value>> {
        let (wasm, policy, a) = (&self.wasm, &self.policy, &self.addrs);
        let mut specs = vec![
            // Shaped as Istio's ingress gateway listener with the default mesh config
            // (`use_remote_address: true`, `numTrustedProxies` 0): the peer is the client.
            spec(
                "gateway",
                a.gateway,
                ListenerKind::Gateway(
                    vec![http_filter(
                        wasm,
                        &json!({"policy": policy, "workload": workload("istio-system", "ingressgateway")}),
                    )],
                    0,
                ),
            )?,
            spec("cart", a.cart, ListenerKind::Http(vec![cart_filter]))?,
            spec(
                "catalog",
                a.catalog,
                ListenerKind::Http(vec![http_filter(
                    wasm,
                    &json!({"policy": policy, "workload": workload("shop", "catalog")}),
                )]),
            )?,
            spec(
                "payments_api",
                a.payments,
                ListenerKind::Http(vec![http_filter(
                    wasm,
                    &json!({"bundle": self.bundle, "workload": workload("payments", "api")}),
                )]),
            )?,
            spec(
                "postgres",
                a.postgres,
                ListenerKind::Tcp(vec![network_filter(
                    wasm,
                    &json!({"policy": policy, "workload": workload("data", "postgres")}),
                )]),
            )?,
            spec(
                "trap_http",
                a.trap_http,
                ListenerKind::Http(vec![with_vm(
                    http_filter(&self.trap_wasm, &json!({})),
                    "trap",
                )]),
            )?,
            spec(
                "trap_tcp",
                a.trap_tcp,
                ListenerKind::Tcp(vec![with_vm(
                    network_filter(&self.trap_wasm, &json!({})),
                    "trap",
                )]),
            )?,
        ];
        specs.extend(extra);
        let mut listeners = bootstrap(&specs, &self.pki, self.echo.port)
            .pointer("/static_resources/listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        access_log::add_to_listeners(&mut listeners, &self.access_log)?;
        Ok(listeners)
    }

    /// The plugin configuration JSON Envoy started with for listener `name`.
    pub fn configuration(&self, name: &str) -> Result<String> {
        self.listeners
            .iter()
            .find(|l| l.get("name").and_then(Value::as_str) == Some(name))
            .and_then(plugin_configuration)
            .ok_or_else(|| Error(format!("no Palisade filter on listener `{name}`")))
    }
}

impl Shop {
    /// A GET on the admin interface: the body.
    pub fn admin(&self, path: &str) -> Result<String> {
        let to = SocketAddr::from(([127, 0, 0, 1], self.envoy.admin_port));
        let req = HttpRequest {
            method: "GET".into(),
            host: "admin".into(),
            path: path.into(),
            headers: Vec::new(),
        };
        send_http_full(None, to, &Transport::Plain, &req).map(|r| r.body)
    }

    /// The counters named `palisade_*` at `/stats/prometheus` (a counter never incremented is
    /// not defined, so it is absent: read as 0).
    pub fn metrics(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .admin("/stats/prometheus")?
            .lines()
            .filter(|l| l.starts_with("palisade_"))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// A counter at `/stats` (e.g. `listener_manager.lds.update_rejected`).
    pub fn stat(&self, name: &str) -> Result<u64> {
        Ok(self
            .admin(&format!("/stats?filter={name}"))?
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Waits (up to 15 s) for a counter to reach `at_least`; its last value.
    pub fn wait_stat(&self, name: &str, at_least: u64) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.stat(name)?;
            if v >= at_least || Instant::now() > deadline {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's log so far.
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.setup.log).unwrap_or_default()
    }
}

/// Sets `key` of a JSON object (nothing for other values).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), value);
    }
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).context(|| "serialising JSON".into())?;
    std::fs::write(path, bytes).context(|| format!("writing {}", path.display()))
}

/// An HTTP request's fields, for [`HttpRequest`].
pub fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A per-policy counter's name at `/stats/prometheus`.
pub fn per_policy(rule: &str, outcome: &str) -> String {
    prometheus_name(&format!("palisade.policy.{rule}.{outcome}"))
}

/// A custom metric's name as `/stats/prometheus` shows it: Envoy drops the `wasmcustom.`
/// prefix of custom stats and turns every character outside `[a-zA-Z0-9_]` into `_`.
pub fn prometheus_name(metric: &str) -> String {
    metric
        .strip_prefix("wasmcustom.")
        .unwrap_or(metric)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `examples/shop/requests/<name>.json`: (expect allowed, deciding rule or "none").
pub fn expectation(name: &str) -> Result<(bool, String)> {
    let path = shop_dir().join("requests").join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&read(&path)?).context(|| format!("parsing {name}"))?;
    let allowed = match v.get("expect").and_then(Value::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        other => return Err(Error(format!("{name}: expect {other:?}"))),
    };
    Ok((
        allowed,
        v.get("rule")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string(),
    ))
}
