//! Arbitrary requests against a fixed policy set using every field: deciding never panics.
//! Input starting with `{` is a request in JSON (the CLI's and browser's form); anything else
//! is read as a structured [`common::FuzzRequest`].

#![no_main]

mod common;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use palisade_engine::Request;

fuzz_target!(|data: &[u8]| {
    let engines = common::engines();
    if data.first() == Some(&b'{') {
        if let Ok(req) = serde_json::from_slice::<Request>(data) {
            for engine in engines {
                common::exercise(engine, &req);
            }
        }
        return;
    }
    let Ok(fuzzed) = common::FuzzRequest::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let req = fuzzed.request();
    let n = engines.len().max(1);
    if let Some(engine) = engines.get(usize::from(fuzzed.engine) % n) {
        common::exercise(engine, &req);
    }
});
