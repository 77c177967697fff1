//! Decisions for destinations described inline (namespace and labels, no inventory workload):
//! the view is built once per destination and kept, and the kept view decides exactly as a
//! freshly built one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_engine::{Options, Request, SourceFile, Verdict, compile, load};

const POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to:
    - operation: {paths: [/public]}
";

fn request(app: &str, path: &str) -> Request {
    serde_json::from_value(serde_json::json!({
        "protocol": "http",
        "destination": {"workload": {"namespace": "shop", "labels": {"app": app}}},
        "http": {"method": "GET", "path": path},
    }))
    .unwrap()
}

#[test]
fn an_inline_destination_is_viewed_once_and_decides_as_a_fresh_view() {
    let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
    let engine = compile(&set, &Options::default()).unwrap();
    assert!(engine.inline_views().is_empty());

    let cart = [("app".to_string(), "cart".to_string())];
    let fresh = engine.build_view("shop", &cart);
    for path in ["/public", "/private", "/public", "/private"] {
        let r = request("cart", path);
        let kept = engine.decide(&r);
        assert_eq!(kept, engine.decide_in_view(&fresh, &r), "{path}");
        let want = if path == "/public" {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        assert_eq!(kept.verdict, want, "{path}");
    }
    assert_eq!(
        engine.inline_views().len(),
        1,
        "one view for the one destination"
    );

    // Another destination gets its own view (no policy selects it: allowed).
    assert_eq!(
        engine.decide(&request("web", "/private")).verdict,
        Verdict::Allow
    );
    assert_eq!(engine.inline_views().len(), 2);

    // A clone starts empty and still equals the original: the views are not the policy.
    let copy = engine.clone();
    assert!(copy.inline_views().is_empty());
    assert_eq!(copy, engine);
}

#[test]
fn the_kept_views_are_bounded() {
    let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
    let engine = compile(&set, &Options::default()).unwrap();
    let cap = palisade_engine::ViewCache::CAPACITY;
    for i in 0..cap + 10 {
        let r = request(&format!("app-{i}"), "/private");
        assert_eq!(engine.decide(&r).verdict, Verdict::Allow);
        assert!(
            engine.inline_views().len() <= cap,
            "{} views kept",
            engine.inline_views().len()
        );
    }
    // Emptied when full, then filled again: the last ten destinations are kept.
    assert_eq!(engine.inline_views().len(), 10);
}
