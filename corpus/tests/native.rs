//! Runs the whole corpus through the natively compiled engine.

use std::path::Path;

use palisade_corpus::{Native, run};

#[test]
fn the_native_engine_decides_every_corpus_case_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let report = run(&dir, &mut Native::default());
    println!("{report}");
    println!("executed {} corpus cases", report.total());
    assert!(
        report.total() >= 300,
        "the corpus must hold at least 300 cases, it has {}",
        report.total()
    );
    assert_eq!(report.failed(), 0, "{report}");
}
