//! The JavaScript API (`wasm-bindgen`): JSON text in, JSON text out. Each function only
//! forwards to the plain Rust functions of the crate.

use wasm_bindgen::prelude::wasm_bindgen;

/// Validates and compiles the policies (one YAML text): `{ok, errors, summary}`. `options`:
/// the mesh options as JSON (optional).
#[wasm_bindgen]
pub fn check(policies: &str, options: Option<String>) -> String {
    crate::check_json(policies, options.as_deref().unwrap_or_default())
}

/// Compiles the policies and decides the requests: `{ok: true, results, totals}` (as
/// `palisade eval --output json`) or `{ok: false, stage, errors}`. `options`: the mesh
/// options as JSON (optional).
#[wasm_bindgen]
pub fn evaluate(policies: &str, requests: &str, options: Option<String>) -> String {
    crate::evaluation_json(&crate::evaluate_with(
        policies,
        requests,
        options.as_deref().unwrap_or_default(),
    ))
}

/// The engine's version (the crate version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Policies compiled once, for many requests.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Simulator {
    inner: crate::Simulator,
}

#[wasm_bindgen]
impl Simulator {
    /// Compiles the policies with the mesh options (JSON, optional); never throws (invalid
    /// policies or options show in `check()`).
    #[wasm_bindgen(constructor)]
    pub fn new(policies: &str, options: Option<String>) -> Simulator {
        Simulator {
            inner: crate::Simulator::with_options(policies, options.as_deref().unwrap_or_default()),
        }
    }

    /// `{ok, errors, summary}` for the policies given.
    pub fn check(&self) -> String {
        crate::to_json(self.inner.check())
    }

    /// Decides the requests with the compiled policies (as `evaluate`).
    pub fn evaluate(&self, requests: &str) -> String {
        crate::evaluation_json(&self.inner.evaluate(requests))
    }
}
