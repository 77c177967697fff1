//! The strict reader: one row a case, each a document two runtimes could read differently
//! (refused, with where) or one they read alike (accepted).

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

const BASE: &str = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":1000,"gid":1000},"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"network"}]}}"#;

/// `BASE` with `insert` placed right after the opening brace of the object at `at`.
fn with(at: &str, insert: &str) -> String {
    let i = BASE.find(at).unwrap() + at.len();
    format!("{}{insert},{}", &BASE[..i], &BASE[i..])
}

#[test]
fn documents_runtimes_could_read_differently_are_refused_with_where() {
    let cases: &[(&str, String, &str)] = &[
        (
            "a capitalised known key (runc reads `Capabilities` as `capabilities`)",
            with(
                r#""process":{"#,
                r#""Capabilities":{"bounding":["CAP_SYS_ADMIN"]}"#,
            ),
            "`process.Capabilities` is not the key `process.capabilities`",
        ),
        (
            "an upper-case `UID` beside `uid` (runc: the last wins)",
            with(r#""user":{"#, r#""UID":0"#),
            "`process.user.UID` is not the key `process.user.uid`",
        ),
        (
            "`NoNewPrivileges` beside nothing (runc reads it)",
            with(r#""process":{"#, r#""NoNewPrivileges":false"#),
            "`process.NoNewPrivileges`",
        ),
        (
            "the long s `ſ` folds to `s` (`linux.ſeccomp`)",
            with(r#""linux":{"#, "\"\u{17f}eccomp\":null"),
            "`linux.\u{17f}eccomp` is not the key `linux.seccomp`",
        ),
        (
            "the Kelvin sign folds to `k` (`linux.mas\u{212a}edPaths`)",
            with(r#""linux":{"#, "\"mas\u{212a}edPaths\":[]"),
            "`linux.mas\u{212a}edPaths` is not the key `linux.maskedPaths`",
        ),
        (
            "a top-level `Linux`",
            with("{", r#""Linux":{"namespaces":[]}"#),
            "`Linux` is not the key `linux`",
        ),
        (
            "a key written with an escape still folds (`\\u0050rocess`)",
            with("{", r#""\u0050rocess":{}"#),
            "`Process` is not the key `process`",
        ),
        (
            "a known key given twice (runc: last, crun: first)",
            with("{", r#""process":{"user":{"uid":0}}"#),
            "`process` is given more than once",
        ),
        (
            "a seccomp field given twice, deep in the schema",
            with(
                r#""linux":{"#,
                r#""seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultAction":"SCMP_ACT_ALLOW"}"#,
            ),
            "`linux.seccomp.defaultAction` is given more than once",
        ),
        (
            "an annotation given twice (a map: exact keys, still two readings)",
            with(
                "{",
                r#""annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-type":"sandbox"}"#,
            ),
            "`annotations.io.kubernetes.cri.container-type` is given more than once",
        ),
        (
            "a folded key inside an array element (`mounts[0].Source`)",
            with(
                "{",
                r#""mounts":[{"destination":"/x","type":"bind","source":"/tmp","Source":"/"}]"#,
            ),
            "`mounts[0].Source` is not the key `mounts[0].source`",
        ),
        (
            "two network namespace entries (runc refuses, crun joins the last)",
            BASE.replace(
                r#"{"type":"network"}"#,
                r#"{"type":"network"},{"type":"network","path":"/proc/1/ns/net"}"#,
            ),
            "lists the `network` namespace more than once",
        ),
    ];
    for (name, doc, want) in cases {
        let err = read_config(doc)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(matches!(err, ConfigError::Ambiguous(_)), "{name}: {err:?}");
        let err = err.to_string();
        assert!(
            err.starts_with("config.json refused: runtimes could read it differently: "),
            "{name}: {err}"
        );
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn documents_every_runtime_reads_alike_are_accepted() {
    let cases: &[(&str, String)] = &[
        ("the base document", BASE.to_string()),
        (
            "a key no runtime knows, in any case, is ignored by all",
            with("{", r#""X-Vendor":{"Process":1},"somethingElse":true"#),
        ),
        (
            "keys of maps are exact: `A` and `a` are two annotations",
            with("{", r#""annotations":{"A":"1","a":"2"}"#),
        ),
        (
            "a dotted İ does not fold to i (Go: it folds to itself)",
            with(r#""user":{"#, "\"\u{130}d\":1"),
        ),
        (
            "trailing data after the document: runc ignores it, crun refuses the file",
            format!("{BASE}\n{{\"process\":{{\"user\":{{\"uid\":0}}}}}} garbage"),
        ),
    ];
    for (name, doc) in cases {
        let got = read_config(doc);
        assert!(got.is_ok(), "{name}: {got:?}");
    }
    let trailing = format!("{BASE} {{\"process\":{{\"user\":{{\"uid\":0}}}}}}");
    let config = read_config(&trailing).unwrap();
    let uid = config.process.and_then(|p| p.user).map(|u| u.uid);
    assert_eq!(uid, Some(1000), "the first document is decided on");
}

#[test]
fn first_document_cuts_before_trailing_bytes_even_when_not_utf8() {
    let mut bytes = BASE.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n\xff\xfe trailing");
    assert_eq!(first_document(&bytes), Ok(BASE));
    let err = first_document(b"{\"a\":\"\xff\"}")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("invalid config.json") || err.contains("not UTF-8"),
        "{err}"
    );
    let err = first_document(b"  ")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("invalid config.json"), "{err}");
    let err = first_document(b"{\"process\":")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("EOF"), "{err}");
}

#[test]
fn go_folding_matches_only_what_bytes_equal_fold_matches() {
    for (key, name, want) in [
        ("capabilities", "capabilities", true),
        ("CAPABILITIES", "capabilities", true),
        ("\u{17f}eccomp", "seccomp", true),
        ("SECCOMP", "seccomp", true),
        ("mas\u{212a}edPaths", "maskedPaths", true),
        ("\u{130}d", "id", false),
        ("\u{131}d", "id", false),
        ("seccomp ", "seccomp", false),
        ("secomp", "seccomp", false),
        ("", "uid", false),
    ] {
        assert_eq!(go_fold_eq(key, name), want, "{key:?} vs {name:?}");
    }
}
