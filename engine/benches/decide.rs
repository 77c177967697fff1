//! Decision cost as the rule count grows, and compile time. Run: `cargo xtask bench`
//! (or `cargo bench -p palisade-engine --bench decide`).
//!
//! Each size N builds ALLOW policies (100 rules each, as a large mesh would) on one workload;
//! rule i admits principal `…/ns/team-i/sa/app-i` on paths `/api/v<i>/*` with GET or POST,
//! every 7th rule also needs a header, every 11th is a DENY on a namespace. Three requests
//! are timed: one matching the last rule in Envoy's order, one matching a middle rule and one
//! matching nothing (the worst case of a linear scan). The median over batches is printed in
//! nanoseconds per decision, and the ratio of each size to the 10-rule cost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use palisade_engine::{Engine, Options, Request, SourceFile, compile, load};

fn policies(n: usize) -> String {
    let mut out = String::new();
    for chunk in 0..n.div_ceil(100) {
        let deny = chunk % 11 == 10;
        out.push_str(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{chunk:05}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  action: {}\n  rules:\n",
            if deny { "DENY" } else { "ALLOW" }
        ));
        for i in chunk * 100..((chunk + 1) * 100).min(n) {
            if deny {
                out.push_str(&format!(
                    "  - from: [{{source: {{namespaces: [\"blocked-{i}\"]}}}}]\n"
                ));
                continue;
            }
            out.push_str(&format!(
                "  - from: [{{source: {{principals: [\"cluster.local/ns/team-{i}/sa/app-{i}\"]}}}}]\n    to: [{{operation: {{methods: [GET, POST], paths: [\"/api/v{i}/*\"]}}}}]\n"
            ));
            if i % 7 == 0 {
                out.push_str(
                    "    when: [{key: \"request.headers[x-tenant]\", values: [\"t-*\"]}]\n",
                );
            }
        }
        out.push_str("---\n");
    }
    out
}

fn request(i: usize) -> Request {
    serde_json::from_value(serde_json::json!({
        "source": {"ip": "10.0.0.1", "principal": format!("spiffe://cluster.local/ns/team-{i}/sa/app-{i}")},
        "destination": {"ip": "10.0.0.2", "port": 8080, "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": "GET", "host": "cart", "path": format!("/api/v{i}/items?x=1"), "headers": {"x-tenant": "t-1"}}
    }))
    .unwrap()
}

/// Median ns per call over 31 batches of `iters` calls.
fn time(engine: &Engine, view: &palisade_engine::WorkloadView, req: &Request) -> f64 {
    let iters = 20_000;
    let mut samples = Vec::new();
    for _ in 0..31 {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(engine.decide_in_view(black_box(view), black_box(req)));
        }
        samples.push(start.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// Median ns per `Engine::decide` call (the view looked up, not given).
fn time_decide(engine: &Engine, req: &Request) -> f64 {
    let iters = 20_000;
    let mut samples = Vec::new();
    for _ in 0..31 {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(engine.decide(black_box(req)));
        }
        samples.push(start.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn last_allow_rule(n: usize) -> usize {
    (0..n).rev().find(|i| (i / 100) % 11 != 10).unwrap_or(0)
}

fn main() {
    println!("palisade engine benchmark: median ns per decision (one workload's view)\n");
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>12}",
        "rules", "last rule", "middle rule", "no match", "compile"
    );
    let mut base = None;
    let mut rows = Vec::new();
    for n in [10usize, 1_000, 10_000] {
        let yaml = policies(n);
        let start = Instant::now();
        let set = load(&[SourceFile::new("bench.yaml", yaml)]).unwrap();
        let parsed = start.elapsed();
        let engine = compile(&set, &Options::default()).unwrap();
        let view = engine.build_view("shop", &[("app".into(), "cart".into())]);
        let compiled = start.elapsed();
        let last = request(last_allow_rule(n));
        let middle = request(last_allow_rule(n / 2));
        let none = request(n + 1);
        assert!(
            engine.decide_in_view(&view, &last).allowed(),
            "last rule allows"
        );
        assert!(
            engine.decide_in_view(&view, &middle).allowed(),
            "middle rule allows"
        );
        assert!(
            !engine.decide_in_view(&view, &none).allowed(),
            "no match denies"
        );
        let t = [
            time(&engine, &view, &last),
            time(&engine, &view, &middle),
            time(&engine, &view, &none),
        ];
        println!(
            "{n:>7} {:>12.0} {:>12.0} {:>12.0} {:>9.1} ms  (parse+validate {:.1} ms)",
            t[0],
            t[1],
            t[2],
            ms(compiled),
            ms(parsed)
        );
        // `Engine::decide` itself: the request names its destination inline (namespace and
        // labels), so the first call builds that workload's view and later calls reuse it.
        let start = Instant::now();
        black_box(engine.build_view("shop", &[("app".into(), "cart".into())]));
        let build = start.elapsed();
        let inline = time_decide(&engine, &last);
        assert_eq!(engine.decide(&last), engine.decide_in_view(&view, &last));
        let worst = t.iter().copied().fold(0.0, f64::max);
        base.get_or_insert(worst);
        rows.push((n, worst, compiled, inline, build));
    }
    let base = base.unwrap_or(1.0);
    println!();
    for (n, worst, compiled, _, _) in &rows {
        println!(
            "{n:>7} rules: worst case {worst:.0} ns = {:.2}x the 10-rule cost; load+compile {:.1} ms",
            worst / base,
            ms(*compiled)
        );
    }
    println!();
    for (n, _, _, inline, build) in rows {
        println!(
            "{n:>7} rules: Engine::decide, destination inline: {inline:.0} ns (last rule; its view built once, {:.2} ms, then kept)",
            ms(build)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
