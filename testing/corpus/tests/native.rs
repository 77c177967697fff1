//! Runs the whole corpus through the natively compiled engine.

use std::path::Path;

use palisade_corpus::{Native, run};

/// The cases of each topic file in `cases/` (its `cases` plus its `caseFiles`), counted in the
/// files by hand: `python3 -c "import json; d=json.load(open(f)); print(len(d['cases']) +
/// len(d.get('caseFiles', [])))"` per file. Adding a case means adding it here: a topic that
/// silently lost its cases (a file no longer read, a `cases` key misspelt) fails below.
const PER_TOPIC: &[(&str, usize)] = &[
    ("addresses", 20),
    ("dry-run", 10),
    ("identity", 65),
    ("jwt", 44),
    ("netpol", 26),
    ("operation", 79),
    ("order", 19),
    ("root-namespace", 4),
    ("rules", 10),
    ("scope", 19),
    ("shop", 46),
    ("tcp", 26),
    ("td-aliases", 14),
    ("when", 52),
];

/// The sum of [`PER_TOPIC`].
const TOTAL: usize = 434;

#[test]
fn the_native_engine_decides_every_corpus_case_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let report = run(&dir, &mut Native::default());
    println!("{report}");
    println!("executed {} corpus cases", report.total());
    assert_eq!(report.failed(), 0, "{report}");
    // The native engine expresses every request: nothing is skipped.
    assert_eq!(report.skipped, Vec::<String>::new());
    let per_topic: Vec<(String, usize)> = report
        .per_topic()
        .into_iter()
        .map(|(topic, n, _)| (topic, n))
        .collect();
    let want: Vec<(String, usize)> = PER_TOPIC
        .iter()
        .map(|(t, n)| ((*t).to_string(), *n))
        .collect();
    assert_eq!(per_topic, want, "cases per topic");
    assert_eq!(PER_TOPIC.iter().map(|(_, n)| n).sum::<usize>(), TOTAL);
    assert_eq!(report.total(), TOTAL);
}
