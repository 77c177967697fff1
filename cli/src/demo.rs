//! `palisade demo`: Palisade's main job on the built-in example — the policies, inventory
//! and sample requests of `examples/shop/`, embedded in the binary — printed as a table.

use std::fmt::Write as _;

use palisade_engine::labelled::{Evaluated, Labelled, Totals, decide_all};
use palisade_engine::{Options, SourceFile};
use serde::Serialize;

use crate::args::Format;
use crate::exit::Exit;
use crate::input;
use crate::report::{Failure, print_result};

/// The example's policy and inventory files: (name shown in messages, text).
const POLICIES: &[(&str, &str)] = &[
    (
        "examples/shop/inventory.yaml",
        include_str!("../../examples/shop/inventory.yaml"),
    ),
    (
        "examples/shop/policies/data.yaml",
        include_str!("../../examples/shop/policies/data.yaml"),
    ),
    (
        "examples/shop/policies/mesh.yaml",
        include_str!("../../examples/shop/policies/mesh.yaml"),
    ),
    (
        "examples/shop/policies/network.yaml",
        include_str!("../../examples/shop/policies/network.yaml"),
    ),
    (
        "examples/shop/policies/payments.yaml",
        include_str!("../../examples/shop/policies/payments.yaml"),
    ),
    (
        "examples/shop/policies/shop.yaml",
        include_str!("../../examples/shop/policies/shop.yaml"),
    ),
];

/// The example's sample requests, one labelled request (`{name, request, expect, rule}`) a file.
const REQUESTS: &[(&str, &str)] = &[
    (
        "examples/shop/requests/browse-home.json",
        include_str!("../../examples/shop/requests/browse-home.json"),
    ),
    (
        "examples/shop/requests/cart-charges-payment.json",
        include_str!("../../examples/shop/requests/cart-charges-payment.json"),
    ),
    (
        "examples/shop/requests/cart-refund-without-ops-token.json",
        include_str!("../../examples/shop/requests/cart-refund-without-ops-token.json"),
    ),
    (
        "examples/shop/requests/cart-to-postgres.json",
        include_str!("../../examples/shop/requests/cart-to-postgres.json"),
    ),
    (
        "examples/shop/requests/frontend-adds-to-cart.json",
        include_str!("../../examples/shop/requests/frontend-adds-to-cart.json"),
    ),
    (
        "examples/shop/requests/gateway-debug-denied.json",
        include_str!("../../examples/shop/requests/gateway-debug-denied.json"),
    ),
    (
        "examples/shop/requests/gateway-reads-catalog.json",
        include_str!("../../examples/shop/requests/gateway-reads-catalog.json"),
    ),
    (
        "examples/shop/requests/gateway-unknown-host.json",
        include_str!("../../examples/shop/requests/gateway-unknown-host.json"),
    ),
    (
        "examples/shop/requests/mobile-reads-cart.json",
        include_str!("../../examples/shop/requests/mobile-reads-cart.json"),
    ),
    (
        "examples/shop/requests/plaintext-to-cart.json",
        include_str!("../../examples/shop/requests/plaintext-to-cart.json"),
    ),
    (
        "examples/shop/requests/processor-egress-blocked.json",
        include_str!("../../examples/shop/requests/processor-egress-blocked.json"),
    ),
    (
        "examples/shop/requests/processor-to-postgres.json",
        include_str!("../../examples/shop/requests/processor-to-postgres.json"),
    ),
];

#[derive(Debug, Serialize)]
struct DemoResult {
    results: Vec<Evaluated>,
    totals: Totals,
}

/// `palisade demo`. Exit 0 when every sample request is decided as its file expects, 1 when
/// one is not.
pub fn demo(output: Format) -> Result<Exit, Failure> {
    let sources: Vec<SourceFile> = POLICIES
        .iter()
        .map(|(name, text)| SourceFile::new(*name, *text))
        .collect();
    let (_, engine) = input::build(&sources, &Options::default())?;
    let mut requests: Vec<Labelled> = Vec::new();
    for (name, text) in REQUESTS {
        let file = SourceFile::new(*name, *text);
        for mut l in input::parse_requests(&file)? {
            if l.name.is_none() {
                l.name = Some(stem(name).to_string());
            }
            requests.push(l);
        }
    }
    let (results, totals) = decide_all(&engine, requests);
    let status = if totals.unexpected > 0 {
        Exit::Denied
    } else {
        Exit::Ok
    };
    let result = DemoResult { results, totals };
    print_result(output, &result, || table(&result));
    Ok(status)
}

fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".json").unwrap_or(file)
}

fn table(result: &DemoResult) -> String {
    let mut out = String::new();
    let width = result
        .results
        .iter()
        .map(|r| r.label().len())
        .chain(["REQUEST".len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "{:<width$}  {:<7}  DECIDING RULE",
        "REQUEST", "VERDICT"
    );
    for r in &result.results {
        let mark = match r.as_expected {
            Some(false) => "  (unexpected)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<7}  {}{mark}",
            r.label(),
            r.decision.verdict.to_string(),
            r.decider()
        );
    }
    let t = &result.totals;
    let _ = write!(
        out,
        "{} requests: {} allowed, {} denied",
        t.requests, t.allowed, t.denied
    );
    if t.unexpected > 0 {
        let _ = write!(out, ", {} not as expected", t.unexpected);
    }
    out.push('\n');
    out
}
