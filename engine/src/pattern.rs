//! The value matchers Istio's translator emits, implemented without a regex engine:
//! exact / prefix / suffix / presence strings, the few regular expressions Istio generates
//! (as byte globs), Envoy's URI templates and CIDR ranges.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A string matcher. `ignore_case` matchers hold a lower-cased pattern and are given a
/// lower-cased value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StrMatch {
    /// Equal to the pattern.
    Exact(String),
    /// Starts with the pattern.
    Prefix(String),
    /// Ends with the pattern.
    Suffix(String),
    /// Present and non-empty (Istio's `*` on principals, paths, SNI: regex `.+`).
    NonEmpty,
    /// Present, possibly empty (Envoy's `present_match`, Istio's `*` on headers, methods, hosts).
    Present,
    /// A regular expression of Istio's, as a glob (see [`Glob`]).
    Glob(Glob),
    /// An Envoy URI template (`/a/{*}/b/{**}`), matched against the path without query.
    Template(Template),
}

impl StrMatch {
    /// Matches a present value.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(p) => v == p,
            StrMatch::Prefix(p) => v.starts_with(p.as_str()),
            StrMatch::Suffix(s) => v.ends_with(s.as_str()),
            StrMatch::NonEmpty => !v.is_empty(),
            StrMatch::Present => true,
            StrMatch::Glob(g) => g.matches(v),
            StrMatch::Template(t) => t.matches(v),
        }
    }

    /// Istio's translation of a policy string for exact/prefix/suffix/presence fields:
    /// `abc` exact, `abc*` prefix, `*abc` suffix, `*` the given presence matcher.
    pub fn istio(value: &str, star: StrMatch) -> StrMatch {
        if value == "*" {
            star
        } else if let Some(p) = value.strip_suffix('*') {
            StrMatch::Prefix(p.to_string())
        } else if let Some(s) = value.strip_prefix('*') {
            StrMatch::Suffix(s.to_string())
        } else {
            StrMatch::Exact(value.to_string())
        }
    }
}

/// One token of a [`Glob`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GlobPart {
    /// Literal bytes.
    Lit(String),
    /// Any sequence of characters but newline (regex `.*`).
    Star,
    /// One or more characters but newline (regex `.+`).
    Plus,
    /// Any run of characters but `/` (regex `[^/]*`).
    NoSlash,
}

/// The regular expressions Istio generates for principals, namespaces and service accounts
/// are all literal text joined by `.*` and `.+`, anchored at both ends. A `Glob` is exactly that
/// language, matched by backtracking over the (few) wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Glob(pub Vec<GlobPart>);

impl Glob {
    /// Builds a glob from text where `*` stands for `.*` (used for Istio's `*` pieces).
    pub fn from_star_text(parts: &[&str]) -> Vec<GlobPart> {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(GlobPart::Star);
            }
            if !p.is_empty() {
                out.push(GlobPart::Lit((*p).to_string()));
            }
        }
        out
    }

    /// Whether the whole value matches.
    pub fn matches(&self, text: &str) -> bool {
        let v = text.as_bytes();
        let has_no_slash = self.0.iter().any(|p| matches!(p, GlobPart::NoSlash));
        let newline_in_literal = self
            .0
            .iter()
            .any(|p| matches!(p, GlobPart::Lit(l) if l.contains('\n')));
        if has_no_slash || newline_in_literal {
            // Trust-domain globs (one `[^/]*`, bounded by the first `/`) and the
            // never-seen literal newline keep the backtracking matcher.
            return glob_match(&self.0, v);
        }
        // Wildcards never match a newline and no literal holds one.
        if v.contains(&b'\n') {
            return false;
        }
        // The shapes Istio's namespace (`.*/ns/<ns>/.*`) and prefix/suffix regexes take.
        match self.0.as_slice() {
            [GlobPart::Star, GlobPart::Lit(l), GlobPart::Star] => {
                return text.contains(l.as_str());
            }
            [GlobPart::Lit(p), GlobPart::Star] => return text.starts_with(p.as_str()),
            [GlobPart::Star, GlobPart::Lit(s)] => return text.ends_with(s.as_str()),
            _ => {}
        }
        wildcard_match(&self.0, v)
    }
}

/// One token of the linear matcher: a byte, any one byte, or any run of bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    One,
    Star,
}

/// A position in a glob's token stream, read straight from its parts (no token list is
/// built per match): the part, and the byte within a literal (or, for `Plus`, 0 = its one
/// byte and 1 = its star).
#[derive(Clone, Copy)]
struct At {
    part: usize,
    byte: usize,
}

/// The token at `at` (`None` past the end), and the position after it.
fn token(parts: &[GlobPart], at: At) -> Option<(Tok, At)> {
    let mut at = at;
    loop {
        let next_part = At {
            part: at.part + 1,
            byte: 0,
        };
        match parts.get(at.part)? {
            GlobPart::Lit(l) => match l.as_bytes().get(at.byte) {
                Some(&b) => {
                    return Some((
                        Tok::Byte(b),
                        At {
                            part: at.part,
                            byte: at.byte + 1,
                        },
                    ));
                }
                None => at = next_part,
            },
            GlobPart::Star => return Some((Tok::Star, next_part)),
            GlobPart::Plus if at.byte == 0 => {
                return Some((
                    Tok::One,
                    At {
                        part: at.part,
                        byte: 1,
                    },
                ));
            }
            GlobPart::Plus => return Some((Tok::Star, next_part)),
            // Not reached: `wildcard_match` hands globs with `NoSlash` to `glob_match`.
            GlobPart::NoSlash => return Some((Tok::Star, next_part)),
        }
    }
}

/// The classic iterative wildcard match (`?` and `*`), backtracking only to the last star:
/// O(pattern × value) time, so long principals cannot make it explode.
fn wildcard_match(parts: &[GlobPart], v: &[u8]) -> bool {
    if parts.iter().any(|p| matches!(p, GlobPart::NoSlash)) {
        return glob_match(parts, v);
    }
    let start = At { part: 0, byte: 0 };
    let (mut i, mut j) = (start, 0usize);
    // The position after the last star, and the value byte it was tried from.
    let mut star: Option<(At, usize)> = None;
    while let Some(&b) = v.get(j) {
        match token(parts, i) {
            Some((Tok::One, next)) => {
                i = next;
                j += 1;
            }
            Some((Tok::Byte(c), next)) if c == b => {
                i = next;
                j += 1;
            }
            Some((Tok::Star, next)) => {
                star = Some((next, j));
                i = next;
            }
            _ => match star {
                Some((after, sj)) => {
                    i = after;
                    j = sj + 1;
                    star = Some((after, sj + 1));
                }
                None => return false,
            },
        }
    }
    // The value is used up: the rest of the pattern must be stars.
    let mut rest = token(parts, i);
    while let Some((t, next)) = rest {
        if t != Tok::Star {
            return false;
        }
        rest = token(parts, next);
    }
    true
}

fn glob_match(parts: &[GlobPart], v: &[u8]) -> bool {
    match parts.split_first() {
        None => v.is_empty(),
        Some((GlobPart::Lit(l), rest)) => v
            .strip_prefix(l.as_bytes())
            .is_some_and(|tail| glob_match(rest, tail)),
        Some((GlobPart::Star, rest)) => any_tail(rest, v, 0),
        Some((GlobPart::Plus, rest)) => any_tail(rest, v, 1),
        Some((GlobPart::NoSlash, rest)) => {
            let limit = v.iter().position(|b| *b == b'/').unwrap_or(v.len());
            (0..=limit).any(|i| v.get(i..).is_some_and(|tail| glob_match(rest, tail)))
        }
    }
}

/// Tries every split point after at least `min` newline-free bytes.
fn any_tail(rest: &[GlobPart], v: &[u8], min: usize) -> bool {
    // The wildcard may not run across a newline (RE2's `.`).
    let limit = v.iter().position(|b| *b == b'\n').unwrap_or(v.len());
    if rest.is_empty() {
        return limit == v.len() && v.len() >= min;
    }
    (min..=limit).any(|i| v.get(i..).is_some_and(|tail| glob_match(rest, tail)))
}

/// A piece of an Envoy URI template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TemplatePart {
    /// Literal text.
    Lit(String),
    /// `{*}`: one non-empty path segment.
    Segment,
    /// `{**}`: zero or more characters, slashes included.
    Rest,
}

/// An Envoy URI template (`envoy.path.match.uri_template`), as Istio emits for paths with
/// `{*}` or `{**}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Template(pub Vec<TemplatePart>);

/// Characters a template variable matches (Envoy's `kLiteral`: RFC 3986 pchar without `*`
/// and `=`); `{**}` also matches `/`.
fn template_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&b)
}

impl Template {
    /// Parses a validated template (`{*}`/`{**}` only as whole segments).
    pub fn parse(t: &str) -> Template {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = t;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("{**}") {
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Rest);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("{*}") {
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Segment);
                rest = r;
            } else {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    lit.push(c);
                }
                rest = chars.as_str();
            }
        }
        if !lit.is_empty() {
            parts.push(TemplatePart::Lit(lit));
        }
        Template(parts)
    }

    /// The literal text before the first variable (an index key).
    pub fn literal_prefix(&self) -> &str {
        match self.0.first() {
            Some(TemplatePart::Lit(l)) => l,
            _ => "",
        }
    }

    /// Whether the path (without query) matches the template.
    pub fn matches(&self, path: &str) -> bool {
        template_match(&self.0, path.as_bytes())
    }
}

fn template_match(parts: &[TemplatePart], v: &[u8]) -> bool {
    match parts.split_first() {
        None => v.is_empty(),
        Some((TemplatePart::Lit(l), rest)) => v
            .strip_prefix(l.as_bytes())
            .is_some_and(|tail| template_match(rest, tail)),
        Some((TemplatePart::Segment, rest)) => {
            let n = v.iter().take_while(|b| template_char(**b)).count();
            (1..=n).any(|i| v.get(i..).is_some_and(|t| template_match(rest, t)))
        }
        Some((TemplatePart::Rest, rest)) => {
            let n = v
                .iter()
                .take_while(|b| **b == b'/' || template_char(**b))
                .count();
            (0..=n).any(|i| v.get(i..).is_some_and(|t| template_match(rest, t)))
        }
    }
}

/// Parses an Istio IP value: a CIDR (`10.0.0.0/8`) or a single address (`1.2.3.4`).
///
/// An IPv4-mapped IPv6 value is what Envoy is given for it: Istio's translator (`matcher.
/// CidrRange`, Go's `net.ParseCIDR`/`ParseIP`) writes it as the IPv4 address with the length
/// as written (`::ffff:10.0.0.1` → `10.0.0.1`/32, `::ffff:10.0.0.0/104` → `10.0.0.0`/104), and
/// Envoy reads an IPv4 length past 32 as 32. So it matches IPv4 peers, as in Envoy's RBAC
/// (the real-Envoy parity suite `envoy/harness/tests/parity_extra.rs` checks it).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        if let IpNet::V6(v6) = n
            && let Some(v4) = v6.addr().to_ipv4_mapped()
        {
            return ipnet::Ipv4Net::new(v4, n.prefix_len().min(32))
                .ok()
                .map(|n| IpNet::V4(n.trunc()));
        }
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V6(v6) => IpNet::from(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
        IpAddr::V4(_) => IpNet::from(ip),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s)
    }

    #[test]
    fn template_cases_from_istio_docs_and_integration_tests() {
        let rows: &[(&str, &str, bool)] = &[
            ("/foo/{*}", "/foo/bar", true),
            ("/foo/{*}", "/foo/bar/baz", false),
            ("/foo/{*}", "/foo/", false),
            ("/allow/admin/{**}", "/allow/admin/", true),
            ("/allow/admin/{**}", "/allow/admin/foo/temp.txt", true),
            ("/allow/admin/{**}", "/allow/admin", false),
            ("/store/{**}/cart", "/store//cart", true),
            ("/store/{**}/cart", "/store/foo/bar/cart", true),
            ("/store/{**}/cart", "/store/cart", false),
            ("/foo/{*}/bar/{**}", "/foo//bar/bat.txt", false),
            ("/foo/{*}/bar/{**}", "/foo/x/bar/bat.txt", true),
            ("/{**}/path/template", "/a/b/path/template", true),
            ("/{**}/path/template", "//path/template", true),
        ];
        for (tpl, path, want) in rows {
            assert_eq!(t(tpl).matches(path), *want, "{tpl} vs {path}");
        }
    }

    #[test]
    fn globs_match_like_anchored_regexes() {
        let ns = Glob(Glob::from_star_text(&["", "/ns/foo/", ""]));
        assert!(ns.matches("spiffe://cluster.local/ns/foo/sa/bar"));
        assert!(!ns.matches("spiffe://cluster.local/ns/foobar/sa/bar"));
        let plus = Glob(vec![
            GlobPart::Lit("spiffe://".into()),
            GlobPart::Plus,
            GlobPart::Lit("/sa/x".into()),
        ]);
        assert!(plus.matches("spiffe://td/ns/a/sa/x"));
        assert!(!plus.matches("spiffe:///sa/x"));
        assert!(!Glob(vec![GlobPart::Star]).matches("a\nb"));
    }

    #[test]
    fn long_principals_match_in_linear_time() {
        // `namespaces: ["a*"]` → `.*/ns/a.*/.*`: three wildcards.
        let ns = Glob(Glob::from_star_text(&["", "/ns/a", "/", ""]));
        let long = format!("spiffe://td/{}", "x/".repeat(8 * 1024));
        let start = std::time::Instant::now();
        assert!(!ns.matches(&long));
        assert!(ns.matches(&format!("{long}ns/abc/sa/x")));
        assert!(
            start.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn istio_string_forms() {
        assert_eq!(
            StrMatch::istio("a*", StrMatch::Present),
            StrMatch::Prefix("a".into())
        );
        assert_eq!(
            StrMatch::istio("*a", StrMatch::Present),
            StrMatch::Suffix("a".into())
        );
        assert_eq!(StrMatch::istio("*", StrMatch::NonEmpty), StrMatch::NonEmpty);
        assert_eq!(
            StrMatch::istio("a", StrMatch::Present),
            StrMatch::Exact("a".into())
        );
        assert_eq!(parse_cidr("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(parse_cidr("5.6.7.8/16").unwrap().to_string(), "5.6.0.0/16");
        assert!(parse_cidr("5.6.7.8/33").is_none());
        // IPv4-mapped values, as Istio writes them for Envoy (see `parse_cidr`).
        assert_eq!(
            parse_cidr("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            parse_cidr("::ffff:7f00:1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            parse_cidr("::ffff:127.0.0.0/104").unwrap().to_string(),
            "127.0.0.0/32"
        );
        assert_eq!(
            parse_cidr("::ffff:10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_cidr("fd00::1").unwrap().to_string(), "fd00::1/128");
    }

    fn part() -> impl proptest::strategy::Strategy<Value = GlobPart> {
        use proptest::prelude::*;
        prop_oneof![
            "[ab/]{0,3}".prop_map(GlobPart::Lit),
            Just(GlobPart::Star),
            Just(GlobPart::Plus),
        ]
    }

    proptest::proptest! {
        /// `Glob::matches` (the linear matcher: no allocation, backtracking to the last star
        /// only) agrees with the reference backtracking matcher, newlines included.
        #[test]
        fn the_linear_matcher_agrees_with_backtracking(
            parts in proptest::collection::vec(part(), 0..6),
            value in "[ab/\n]{0,10}",
        ) {
            let v = value.as_bytes();
            let glob = Glob(parts.clone());
            proptest::prop_assert_eq!(glob.matches(&value), glob_match(&parts, v), "{:?} on {:?}", parts, value);
        }

        /// The shapes `Glob::matches` answers with `contains`, `starts_with` and
        /// `ends_with` agree with the backtracking matcher.
        #[test]
        fn the_common_shapes_agree_with_backtracking(
            lit in "[ab/]{0,4}",
            shape in 0usize..3,
            value in "[ab/\n]{0,10}",
        ) {
            let l = GlobPart::Lit(lit);
            let parts = match shape {
                0 => vec![GlobPart::Star, l, GlobPart::Star],
                1 => vec![l, GlobPart::Star],
                _ => vec![GlobPart::Star, l],
            };
            let glob = Glob(parts.clone());
            proptest::prop_assert_eq!(glob.matches(&value), glob_match(&parts, value.as_bytes()), "{:?} on {:?}", parts, value);
        }
    }
}
