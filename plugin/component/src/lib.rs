//! Palisade's engine as a WebAssembly component: the `palisade:policy/engine` world of
//! `wit/palisade.wit`, for hosts that run components (the OCI hook under wasmtime, the test
//! host).
//!
//! The crate is thin glue. [`Instance`] is the per-instance state — the loaded engine — and
//! maps each exported function onto the engine; `glue.rs` (wasm32 only) is what wit-bindgen
//! generates plus the conversion of [`Instance`]'s answers into the WIT records. Build:
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --profile component -p palisade-component
//! ```
//!
//! The component imports nothing it calls: a host may satisfy the WASI imports that Rust's
//! standard library declares with traps.

mod instance;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use instance::Instance;
