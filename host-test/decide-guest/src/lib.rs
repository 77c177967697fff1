//! The engine's decision alone, compiled to wasm32-wasip1.
//!
//! The replay benchmark (`cargo xtask bench-replay`) runs every record through the proxy-wasm
//! plugin: a whole stream per record (context creation, the headers callback, its property
//! and header reads through the ABI, counters, done/log/delete). To show how much of the
//! wasm ÷ native cost ratio is the decision itself — the same engine code, compiled by rustc
//! to wasm and by Cranelift to machine code — this module decides requests with
//! `Engine::decide` in a loop, with no ABI in between:
//!
//! 1. `palisade_alloc(len)` gives the host a buffer in linear memory;
//! 2. `palisade_prepare(ptr, len)` reads `{"files": [{"name", "text"}], "requests": [...]}`
//!    (policy sources as `palisade_engine::SourceFile`s, requests as the engine's JSON) from
//!    it, loads and compiles the policies; 0 on success, 1 on bad input, 2 when the policies
//!    do not compile;
//! 3. `palisade_run(rounds)` decides every request `rounds` times and returns how many
//!    decisions allowed (so the host checks the work against the native engine).

use std::cell::RefCell;

use palisade_engine::{Engine, Options, Request, SourceFile, Verdict};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    files: Vec<File>,
    requests: Vec<Request>,
}

#[derive(Deserialize)]
struct File {
    name: String,
    text: String,
}

thread_local! {
    static STATE: RefCell<Option<(Engine, Vec<Request>)>> = const { RefCell::new(None) };
}

/// Loads and compiles the input's policies and keeps its requests (see the module docs).
pub fn prepare(input: &[u8]) -> u32 {
    let Ok(input) = serde_json::from_slice::<Input>(input) else {
        return 1;
    };
    let files: Vec<SourceFile> = input
        .files
        .into_iter()
        .map(|f| SourceFile::new(f.name, f.text))
        .collect();
    let Ok(engine) = palisade_engine::load(&files)
        .map_err(|_| ())
        .and_then(|set| palisade_engine::compile(&set, &Options::default()).map_err(|_| ()))
    else {
        return 2;
    };
    STATE.with(|s| *s.borrow_mut() = Some((engine, input.requests)));
    0
}

/// Decides every prepared request `rounds` times; the number of allowing decisions (0 when
/// nothing is prepared).
pub fn run(rounds: u32) -> u32 {
    STATE.with(|s| {
        let state = s.borrow();
        let Some((engine, requests)) = state.as_ref() else {
            return 0;
        };
        let mut allowed = 0u32;
        for _ in 0..rounds {
            for r in requests {
                let d = engine.decide(std::hint::black_box(r));
                allowed = allowed.wrapping_add(u32::from(d.verdict == Verdict::Allow));
            }
        }
        allowed
    })
}

#[allow(
    unsafe_code,
    reason = "the exports need #[unsafe(no_mangle)], and the host hands the input over by pointer"
)]
mod exports {
    /// A buffer of `len` bytes for the host to write the input into; it is taken back (and
    /// freed) by `palisade_prepare`.
    #[unsafe(no_mangle)]
    pub extern "C" fn palisade_alloc(len: u32) -> *mut u8 {
        let mut buffer = Vec::<u8>::with_capacity(len as usize);
        let at = buffer.as_mut_ptr();
        std::mem::forget(buffer);
        at
    }

    /// Reads the input the host wrote into a `palisade_alloc(len)` buffer.
    #[unsafe(no_mangle)]
    pub extern "C" fn palisade_prepare(at: *mut u8, len: u32) -> u32 {
        // SAFETY: `at` comes from `palisade_alloc(len)` (capacity `len`), and the host wrote
        // `len` bytes into it before this call; the Vec takes the allocation back and frees it.
        let input = unsafe { Vec::from_raw_parts(at, len as usize, len as usize) };
        super::prepare(&input)
    }

    /// Decides every prepared request `rounds` times.
    #[unsafe(no_mangle)]
    pub extern "C" fn palisade_run(rounds: u32) -> u32 {
        super::run(rounds)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn it_decides_what_it_was_given_and_refuses_bad_input() {
        assert_eq!(prepare(b"not json"), 1);
        let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: public, namespace: shop}\nspec:\n  rules:\n  - to:\n    - operation: {paths: [/public]}\n";
        let request = |path: &str| {
            serde_json::json!({"protocol": "http",
                "destination": {"workload": {"namespace": "shop", "labels": {"app": "cart"}}},
                "http": {"method": "GET", "path": path}})
        };
        let input = serde_json::json!({
            "files": [{"name": "public.yaml", "text": policy}],
            "requests": [request("/public"), request("/private")],
        });
        assert_eq!(prepare(input.to_string().as_bytes()), 0);
        // Three rounds of two requests: the one to /public is allowed each time.
        assert_eq!(run(3), 3);
    }
}
