//! Palisade's proxy-wasm filter: the engine enforcing inside Envoy.
//!
//! One `.wasm` (built with `cargo build --target wasm32-wasip1 --profile plugin -p
//! palisade-proxy-wasm`) serves both `envoy.filters.http.wasm` and
//! `envoy.filters.network.wasm`. Each filter configuration gets its own root context, which
//! parses the plugin configuration and compiles the policy once ([`config::Plugin`]) and hands
//! a shared, read-only copy to every request (HTTP) or connection (TCP) context.
//!
//! The crate is thin glue around the engine, split so that everything but the host calls
//! builds and tests natively:
//!
//! - [`config`]: the configuration JSON → a compiled [`config::Plugin`] (or the reason it is
//!   refused);
//! - [`attributes`]: Envoy's property bytes and request headers → an engine `Request`
//!   (encodings as observed on Envoy 1.40 are listed there);
//! - [`enforce`]: a `Decision` → block or continue, the local reply, counters and the log line;
//! - [`extauthz`]: a CUSTOM policy's provider asked as Envoy's `ext_authz` asks it (the call
//!   and the answer);
//! - `glue` (wasm32 only): the proxy-wasm contexts and host calls.

pub mod attributes;
pub mod config;
pub mod enforce;
pub mod extauthz;

#[cfg(target_arch = "wasm32")]
mod glue;
