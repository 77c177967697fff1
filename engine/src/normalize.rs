//! Path normalisation, as Envoy applies it for Istio's `pathNormalization` modes before
//! authorization sees the path:
//!
//! - `NONE`: the path as sent.
//! - `BASE` (Istio's default; Envoy `normalize_path`): decode percent-encoded unreserved
//!   characters (`%2D %2E %30-%39 %41-%5A %5F %61-%7A %7E`), turn `\` into `/`, and remove
//!   `.` and `..` segments (RFC 3986 §5.2.4).
//! - `MERGE_SLASHES`: `BASE`, then `//` → `/`.
//! - `DECODE_AND_MERGE_SLASHES`: first decode `%2F %2f %5C %5c`, then `MERGE_SLASHES`.
//!
//! The query (`?…`) and fragment are cut before matching `paths`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Istio's `meshConfig.pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// No normalisation.
    None,
    /// RFC 3986 normalisation with unreserved decoding and backslash conversion.
    #[default]
    Base,
    /// `BASE` plus merging of repeated slashes.
    MergeSlashes,
    /// Decode `%2F`/`%5C` first, then `MERGE_SLASHES`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// Parses Istio's spelling (`NONE`, `BASE`, `MERGE_SLASHES`, `DECODE_AND_MERGE_SLASHES`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NONE" => PathNormalization::None,
            "BASE" | "DEFAULT" => PathNormalization::Base,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            _ => return None,
        })
    }
}

/// Splits `:path` into the path and the query+fragment (which authorization ignores).
pub fn strip_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// Normalises a path (query already removed) according to the mode: borrowed when the
/// mode leaves it as it is (the usual case: no `%`, `\\`, `.`/`..` segment or, when slashes
/// are merged, `//`), so most requests are decided without copying their path.
pub fn normalize(path: &str, mode: PathNormalization) -> Cow<'_, str> {
    if unchanged(path, mode) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(rewrite(path, mode))
}

/// Whether `mode` leaves `path` as it is. Conservative: `true` only when no step could
/// change it (a `%` that would stay encoded still takes the slow path).
fn unchanged(path: &str, mode: PathNormalization) -> bool {
    if mode == PathNormalization::None {
        return true;
    }
    let bytes = path.as_bytes();
    !bytes.iter().any(|b| matches!(b, b'%' | b'\\'))
        && !path.split('/').any(|s| s == "." || s == "..")
        && (mode == PathNormalization::Base || !path.contains("//"))
}

/// The normalisation itself, step by step.
fn rewrite(path: &str, mode: PathNormalization) -> String {
    match mode {
        PathNormalization::None => path.to_string(),
        PathNormalization::Base => base(path),
        PathNormalization::MergeSlashes => merge_slashes(&base(path)),
        PathNormalization::DecodeAndMergeSlashes => merge_slashes(&base(&decode_slashes(path))),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` where the decoded byte satisfies `keep`; other escapes stay as they are.
fn decode_where(path: &str, keep: impl Fn(u8) -> bool) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let v = h * 16 + l;
            if keep(v) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII bytes were decoded, so the result stays UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn decode_slashes(path: &str) -> String {
    decode_where(path, |b| b == b'/' || b == b'\\')
}

fn base(path: &str) -> String {
    let decoded = decode_where(path, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    });
    let slashed = decoded.replace('\\', "/");
    remove_dot_segments(&slashed)
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    out
}

/// RFC 3986 §5.2.4, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let body = if absolute {
        path.get(1..).unwrap_or("")
    } else {
        path
    };
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    if absolute {
        result.push('/');
    }
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_path_normalization_table() {
        use PathNormalization::*;
        let rows: &[(PathNormalization, &str, &str)] = &[
            (Base, "/public/../public", "/public"),
            (Base, "/public/../private", "/private"),
            (Base, "/public/%2E%2E/private", "/private"),
            (Base, "/public/%2e/%2e%2e/private", "/private"),
            (Base, "/a/./b/", "/a/b/"),
            (Base, "/a/b/..", "/a/"),
            (Base, "/a\\b", "/a/b"),
            (Base, "/%41%62c", "/Abc"),
            (Base, "/a%2Fb", "/a%2Fb"),
            (Base, "//a//b", "//a//b"),
            (MergeSlashes, "//a//b", "/a/b"),
            (DecodeAndMergeSlashes, "/a%2Fb%2f%2F/c", "/a/b/c"),
            (DecodeAndMergeSlashes, "/a%5Cb", "/a/b"),
            (None, "/a/../b", "/a/../b"),
        ];
        for (mode, input, want) in rows {
            assert_eq!(normalize(input, *mode), *want, "{mode:?} {input}");
        }
        assert_eq!(strip_query("/a?b=c#d"), "/a");
        assert!(matches!(normalize("/a/b.c/d", Base), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a/./b", Base), Cow::Owned(_)));
        assert_eq!(strip_query("/a#d"), "/a");
    }

    /// Paths from the pieces normalisation cares about: every escape of `.`, `/` and `\\` in
    /// upper and lower case (`%2e %2E %2f %2F %5c %5C`), other escapes (unreserved `%41 %7e`,
    /// reserved `%3B %25`, broken `%`, `%zz`, `%2`), `.`/`..` segments, `//`, `\\`, `;`
    /// parameters, a query; or single characters from the same alphabet.
    fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::sample::select(vec![
                "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", "%2E%2e", "%2f", "%2F", "%5c", "%5C",
                "%41", "%7e", "%3B", "%25", "%", "%zz", "%2", "\\", ";", ";a=b", "a", "B", "?",
                "?x=/../", "#",
            ])
            .prop_map(str::to_string),
            "[/.a%2eEfF5cC\\\\;?]",
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        /// The borrowed fast path gives what the full rewrite gives, in every mode.
        #[test]
        fn the_fast_path_agrees_with_the_rewrite(path in hostile_path()) {
            use PathNormalization::*;
            for mode in [None, Base, MergeSlashes, DecodeAndMergeSlashes] {
                let (fast, full) = (normalize(&path, mode), rewrite(&path, mode));
                proptest::prop_assert_eq!(fast.as_ref(), full.as_str(), "{:?}", mode);
            }
        }
    }

    #[test]
    fn the_path_strategy_generates_every_escape_it_is_meant_to() {
        // Guards the strategy above: 2,000 samples hold each piece at least once.
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut all = String::new();
        for _ in 0..2_000 {
            let Ok(tree) = hostile_path().new_tree(&mut runner) else {
                continue;
            };
            all.push_str(&tree.current());
            all.push('|');
        }
        for piece in [
            "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", ";", "//", "..", "\\",
        ] {
            assert!(all.contains(piece), "{piece} never generated");
        }
    }
}
