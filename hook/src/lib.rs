//! Palisade's OCI runtime hook: may this container start?
//!
//! Run by runc, crun, podman or CRI-O as a `createRuntime` (or `prestart`) hook, the binary
//! reads the OCI state from stdin and `<bundle>/config.json`, asks the engine — the
//! `palisade:policy` component (`plugin/component`) under wasmtime, or the native engine when
//! `--native` is chosen — and exits 0 to let the container start or non-zero, with the reasons
//! on stderr, to stop it. Anything it cannot read or run (malformed state, no policy, a trap in
//! the component) is a deny: it fails closed.
//!
//! - [`input`]: the hook's inputs, read tolerantly (runc's and crun's differences).
//! - [`policy`]: where the policy comes from (a bundle, or YAML files).
//! - [`cache`]: the component precompiled once and kept on disk, checked before it is loaded.
//! - [`component`]: the component under wasmtime (fuel and memory bound) and the native twin.
//! - [`host`]: facts only the host can establish (namespace identities, resolved mount
//!   sources, the container stores' roots, the proven pod sandbox), handed to the engine.
//! - [`run`]: one hook invocation, start to exit code.

pub mod cache;
pub mod component;
pub mod fetch;
pub mod host;
pub mod input;
pub mod policy;
pub mod run;

pub use run::{Args, Outcome, run};
