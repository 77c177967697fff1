//! Palisade's containerd NRI plugin: decides whether a container may be created, with the
//! engine's `ContainerPolicy`, inside containerd through NRI's WebAssembly plugin ABI
//! (NRI v0.12; `.wasm` built with `cargo build --target wasm32-wasip1 --profile plugin -p
//! palisade-nri`).
//!
//! NRI calls `Configure` with the plugin's configuration (a policy, [`config`]), then
//! `CreateContainer` for every container: the plugin converts NRI's pod and container into the
//! engine's request ([`convert`]), decides, and answers with an error that fails the creation
//! and lists every violation, or with an adjustment that records the decision in the
//! annotation `palisade.dev/decision` ([`plugin`]). Thin glue, split so that everything but
//! the ABI builds and tests natively:
//!
//! - [`proto`]: the subset of NRI's protobuf messages, as `prost` structs;
//! - [`config`]: the configuration text → a compiled policy, or why it is refused;
//! - [`convert`]: `CreateContainerRequest` → `ContainerRequest`, and what NRI cannot show;
//! - [`plugin`]: one method per NRI call, request bytes → reply bytes or an error text;
//! - `abi` (wasm32 only): the exports, `malloc`/`free`, the `env.log` import.
//!
//! ```
//! use palisade_nri::plugin::{decide, deny_message};
//! use palisade_nri::proto::{Container, CreateContainerRequest, Image, PodSandbox};
//!
//! let policy = palisade_nri::config::parse(
//!     "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: tags}\nspec: {images: {deniedTags: [latest]}}\n",
//! ).unwrap();
//! let req = CreateContainerRequest {
//!     pod: Some(PodSandbox { namespace: "shop".into(), name: "web-0".into(), ..Default::default() }),
//!     container: Some(Container {
//!         id: "c1".into(),
//!         name: "web".into(),
//!         image: Some(Image { name: "nginx".into(), ..Default::default() }),
//!         ..Default::default()
//!     }),
//! };
//! let verdict = decide(&policy.engine, &req).unwrap();
//! assert!(!verdict.decision.allowed);
//! assert!(deny_message(&verdict).contains("[image.deniedTag]"));
//! ```

pub mod config;
pub mod convert;
pub mod plugin;
pub mod proto;

#[cfg(target_arch = "wasm32")]
mod abi;
