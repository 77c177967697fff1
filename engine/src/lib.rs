//! Palisade's engine: the pure core every host runs.
//!
//! It reads the policies users already write — Istio `AuthorizationPolicy`, Kubernetes
//! `NetworkPolicy` — and our `Inventory` of workloads, validates them with positions and field
//! paths, compiles them into an indexed [`Engine`], and decides [`Request`]s with an
//! explanation ([`Decision`]). No I/O, no clock, no host SDK: it builds for native and every
//! wasm32 target, and the same code runs in Envoy, container runtimes and the browser.
//!
//! ```
//! use palisade_engine::{compile, load, Options, Request, SourceFile};
//!
//! let policy = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: only-frontend, namespace: shop}
//! spec:
//!   selector: {matchLabels: {app: cart}}
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
//!     to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
//! "#;
//! let set = load(&[SourceFile::new("policy.yaml", policy)]).unwrap();
//! let engine = compile(&set, &Options::default()).unwrap();
//! let request: Request = serde_json::from_str(r#"{
//!   "source": {"principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
//!   "destination": {"port": 8080, "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
//!   "http": {"method": "GET", "host": "cart", "path": "/api/items?page=2"}
//! }"#).unwrap();
//! let decision = engine.decide(&request);
//! assert!(decision.allowed());
//! assert_eq!(decision.rule.unwrap().id, "ns[shop]-policy[only-frontend]-rule[0]");
//! ```

// What hosts use: the crate-root items below, and these modules.
pub mod authn;
pub mod authz;
pub mod bundle;
pub mod container;
pub mod decision;
pub mod diag;
pub mod error;
pub mod extauthz;
pub mod inventory;
pub mod labelled;
pub mod netpol;
pub mod normalize;
pub mod pattern;
pub mod provenance;
pub mod request;
pub mod selector;
pub mod yaml;

// The engine's inside: compiled rules, their indexes and views, loading.
mod engine;
mod index;
mod load;
mod meta;
mod needs;
mod options;
mod predicate;
mod source;
mod view;

pub use bundle::{
    BundleError, BundleInfo, BundleSigner, Manifest, Scope, TrustedKeys, decode_bundle,
    encode_bundle, encode_signed, open_bundle,
};
pub use decision::{CustomCheck, Decision, RuleRef, ShadowResult, Step, Verdict};
pub use diag::{Diagnostic, Errors, Location};
pub use engine::{Engine, compile};
pub use inventory::{AddressOwner, InventoryWarning, Phase};
pub use load::{PolicySet, load};
pub use needs::Needs;
pub use netpol::{HostNetworkPods, NodeTraffic};
pub use normalize::PathNormalization;
pub use options::Options;
pub use request::{
    Endpoint, ExtAuthzAnswer, HttpAttributes, Protocol, Request, Transport, WorkloadRef,
};
pub use source::SourceFile;
pub use view::{ViewCache, WorkloadView};
