//! Arbitrary bytes as a policy file: loading must return a set or errors (with spans that lie
//! inside the text), and a loaded set must compile, decide, and survive a bundle round trip.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use palisade_engine::{SourceFile, compile, decode_bundle, encode_bundle, load};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let file = SourceFile::new("fuzz.yaml", text.as_str());
    let set = match load(std::slice::from_ref(&file)) {
        Ok(set) => set,
        Err(errors) => {
            assert!(!errors.is_empty(), "load failed without a diagnostic");
            let _ = errors.to_string();
            for d in &errors.diagnostics {
                if let Some(l) = &d.location {
                    let end = l.offset.checked_add(l.len);
                    assert!(
                        end.is_some_and(|e| text.get(l.offset..e).is_some()),
                        "diagnostic span {}+{} outside the text ({} bytes): {d}",
                        l.offset,
                        l.len,
                        text.len()
                    );
                }
            }
            return;
        }
    };
    for options in common::option_sets().iter().take(2) {
        let Ok(engine) = compile(&set, options) else {
            continue;
        };
        common::exercise(&engine, &common::http_request());
        common::exercise(&engine, &common::tcp_request());
        let bundle = encode_bundle(&engine).expect("a compiled engine encodes");
        let back = decode_bundle(&bundle).expect("an encoded engine decodes");
        assert!(back == engine, "bundle round trip changed the engine");
    }
});
