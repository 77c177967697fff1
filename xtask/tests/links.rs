//! Every relative link in README.md, CHANGELOG.md and `docs/**/*.md` must lead somewhere: the
//! file or directory exists, and a `#fragment` names a heading of the target markdown file by
//! GitHub's slug rules. External links (a scheme such as `https:`) are not followed. And every
//! one of those pages must be reachable from the README by following links.
//!
//! A small hand parser, not a markdown crate: the links are `[text](target)` outside code, and
//! the only other syntax that matters is fenced code, inline code and ATX headings.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The documents checked: README.md, CHANGELOG.md and every `*.md` under `docs/`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text of a markdown file outside fenced code blocks, line by line (a fenced line is
/// replaced by an empty one, so line numbers stay right).
fn prose_lines(text: &str) -> Vec<String> {
    let mut fence: Option<(char, usize)> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                out.push(String::new());
            }
            (Some((m, n)), Some(c)) if c == m && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                out.push(String::new());
            }
            (Some(_), _) => out.push(String::new()),
            (None, _) => out.push(line.to_string()),
        }
    }
    out
}

/// The line with inline code spans blanked out (a backtick run opens a span that the same
/// run closes; an unclosed run is literal).
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|c| **c == '`').count();
                if r == run {
                    close = Some(j + r);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.extend(std::iter::repeat_n(' ', end - i));
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of `[text](target)` and `![alt](target)` links on one line of prose: the part
/// before any title, angle brackets removed.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = None;
        for (k, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(k);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let inner = after[..end].trim();
        let target = match inner.strip_prefix('<') {
            Some(t) => t.split('>').next().unwrap_or(""),
            None => inner.split_whitespace().next().unwrap_or(""),
        };
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor for a heading: the rendered text lower-cased, every character that is not
/// a letter, number, `_`, `-` or space dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    // Rendered text: a link shows its text, code spans their content, emphasis nothing.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let link = after
            .find("](")
            .and_then(|mid| after[mid + 2..].find(')').map(|c| (mid, mid + 2 + c)));
        match link {
            Some((mid, close)) => {
                text.push_str(&after[..mid]);
                rest = &after[close + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's ATX headings, duplicates numbered as GitHub numbers them
/// (`x`, `x-1`, `x-2`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in prose_lines(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) || line.len() - trimmed.len() > 3 {
            continue;
        }
        let body = &trimmed[level..];
        if !(body.is_empty() || body.starts_with(' ') || body.starts_with('\t')) {
            continue;
        }
        let body = body.trim().trim_end_matches('#').trim_end();
        let base = slug(body);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// `%XX` escapes decoded (GitHub paths with spaces and the like).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a target is an external link: it starts with a URI scheme (`https:`, `mailto:`).
fn is_external(target: &str) -> bool {
    let scheme: String = target.chars().take_while(|c| *c != ':').collect();
    scheme.len() < target.len()
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Every dead relative link of one document, as `file:line: target (why)`. `read` gives a
/// file's text (empty for a directory), or `None` when there is nothing at the path, so the
/// test of the checker itself needs no files.
fn dead_links(
    root: &Path,
    doc: &Path,
    text: &str,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let shown = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    for (n, line) in prose_lines(text).iter().enumerate() {
        for target in link_targets(line) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            let (file, fragment) = resolved(root, doc, &target);
            if !file.starts_with(normalised(root)) {
                out.push(format!(
                    "{shown}:{}: {target} (outside the repository)",
                    n + 1
                ));
                continue;
            }
            let Some(fragment) = fragment else {
                if read(&file).is_none() {
                    out.push(format!("{shown}:{}: {target} (no such file)", n + 1));
                }
                continue;
            };
            if file.extension().is_none_or(|e| e != "md") {
                if read(&file).is_none() {
                    out.push(format!("{shown}:{}: {target} (no such file)", n + 1));
                }
                continue;
            }
            match read(&file) {
                None => out.push(format!("{shown}:{}: {target} (no such file)", n + 1)),
                Some(t) if !anchors(&t).contains(&percent_decoded(fragment)) => {
                    out.push(format!("{shown}:{}: {target} (no such heading)", n + 1));
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// The file a relative link names (the document itself for a bare `#fragment`) and its
/// fragment.
fn resolved<'t>(root: &Path, doc: &Path, target: &'t str) -> (PathBuf, Option<&'t str>) {
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else if path.starts_with('/') {
        root.join(percent_decoded(path.trim_start_matches('/')))
    } else {
        doc.parent().unwrap().join(percent_decoded(path))
    };
    (normalised(&file), fragment)
}

/// The documents no chain of relative links from README.md reaches: a page nobody can find.
fn orphans(root: &Path, docs: &[PathBuf], read: &dyn Fn(&Path) -> Option<String>) -> Vec<String> {
    let readme = normalised(&root.join("README.md"));
    let mut reached = BTreeSet::from([readme.clone()]);
    let mut queue = vec![readme];
    while let Some(doc) = queue.pop() {
        let Some(text) = read(&doc) else { continue };
        for line in prose_lines(&text) {
            for target in link_targets(&line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                let (file, _) = resolved(root, &doc, &target);
                if file.extension().is_some_and(|e| e == "md") && reached.insert(file.clone()) {
                    queue.push(file);
                }
            }
        }
    }
    docs.iter()
        .filter(|d| !reached.contains(&normalised(d)))
        .map(|d| d.strip_prefix(root).unwrap_or(d).display().to_string())
        .collect()
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalised(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_the_changelog_and_docs_leads_somewhere() {
    let root = root();
    let read = |p: &Path| {
        if p.is_dir() {
            return Some(String::new());
        }
        fs::read(p)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let mut dead = Vec::new();
    let mut links = 0;
    for doc in documents(&root) {
        let text = fs::read_to_string(&doc)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        links += prose_lines(&text)
            .iter()
            .map(|l| link_targets(l).len())
            .sum::<usize>();
        dead.extend(dead_links(&root, &doc, &text, &read));
    }
    assert!(links > 0, "no links found: the parser is broken");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn every_docs_page_and_the_changelog_can_be_reached_from_the_readme() {
    let root = root();
    let read = |p: &Path| fs::read_to_string(p).ok();
    let lost = orphans(&root, &documents(&root), &read);
    assert!(
        lost.is_empty(),
        "no chain of links from README.md reaches these pages; link each from the README's \
         Documentation list or from a page it links:\n{}",
        lost.join("\n")
    );
}

#[test]
fn a_page_linked_only_from_an_unreached_page_is_an_orphan() {
    let files = |p: &Path| -> Option<String> {
        match p.to_str()? {
            "/r/README.md" => Some("[a](docs/a.md)\n".into()),
            "/r/docs/a.md" => Some("[b](b.md#x) `[c](c.md)`\n".into()),
            "/r/docs/b.md" => Some("# x\n".into()),
            "/r/docs/c.md" => Some("[d](d.md)\n".into()),
            "/r/docs/d.md" => Some("[c](c.md)\n".into()),
            _ => None,
        }
    };
    let docs: Vec<PathBuf> = [
        "README.md",
        "docs/a.md",
        "docs/b.md",
        "docs/c.md",
        "docs/d.md",
    ]
    .iter()
    .map(|d| Path::new("/r").join(d))
    .collect();
    assert_eq!(
        orphans(Path::new("/r"), &docs, &files),
        ["docs/c.md", "docs/d.md"]
    );
}

/// A fixed set of files the checker's own cases link between.
fn fixture(path: &Path) -> Option<String> {
    let name = path.to_str()?;
    match name {
        "/r/docs/page.md" => Some("# A page\n\n## Two words, `code` and [a link](x.md)\n\n## Twice\n\n## Twice\n\n```\n# not a heading\n```\n".into()),
        "/r/examples/x.yaml" => Some(String::new()),
        _ => None,
    }
}

fn dead_in(text: &str) -> Vec<String> {
    dead_links(Path::new("/r"), Path::new("/r/README.md"), text, &fixture)
}

#[test]
fn a_link_to_a_file_that_does_not_exist_is_reported_with_its_line() {
    let dead =
        dead_in("intro\n\nsee [the page](docs/gone.md) and [the example](examples/x.yaml)\n");
    assert_eq!(dead, ["README.md:3: docs/gone.md (no such file)"]);
}

#[test]
fn a_fragment_must_name_a_heading_by_githubs_slug_rules() {
    let dead = dead_in(
        "[a](docs/page.md#a-page) [b](docs/page.md#two-words-code-and-a-link) \
         [c](docs/page.md#twice) [d](docs/page.md#twice-1) [e](docs/page.md#twice-2) \
         [f](docs/page.md#not-a-heading)\n",
    );
    assert_eq!(
        dead,
        [
            "README.md:1: docs/page.md#twice-2 (no such heading)",
            "README.md:1: docs/page.md#not-a-heading (no such heading)",
        ]
    );
}

#[test]
fn links_inside_code_and_external_links_are_not_checked() {
    let text = "`[x](gone.md)` and [web](https://example.com/gone) [mail](mailto:a@b)\n\
                ```\n[y](gone.md)\n```\n~~~~\n[z](gone.md)\n~~~~\n";
    assert_eq!(dead_in(text), Vec::<String>::new());
}

#[test]
fn a_fragment_alone_names_a_heading_of_the_same_file() {
    let text = "# Top\n\n## The shop in Envoy, at a glance\n\n[up](#top) \
                [here](#the-shop-in-envoy-at-a-glance) [gone](#elsewhere)\n";
    let dead = dead_links(Path::new("/r"), Path::new("/r/README.md"), text, &|p| {
        (p == Path::new("/r/README.md")).then(|| text.to_string())
    });
    assert_eq!(dead, ["README.md:5: #elsewhere (no such heading)"]);
}

#[test]
fn a_link_out_of_the_repository_is_dead_and_a_title_is_not_part_of_the_target() {
    let dead =
        dead_in("[up](../../etc/passwd) [t](examples/x.yaml \"a title\") [a](<examples/x.yaml>)\n");
    assert_eq!(
        dead,
        ["README.md:1: ../../etc/passwd (outside the repository)"]
    );
}

#[test]
fn githubs_slugs_drop_punctuation_keep_hyphens_and_underscores() {
    assert_eq!(
        slug("Parity with Envoy's RBAC, and the shop in Envoy"),
        "parity-with-envoys-rbac-and-the-shop-in-envoy"
    );
    assert_eq!(
        slug("Raw tokens (`jwtToken`, `palisade eval`)"),
        "raw-tokens-jwttoken-palisade-eval"
    );
    assert_eq!(slug("The `palisade` command"), "the-palisade-command");
    assert_eq!(slug("snake_case and a-b / c"), "snake_case-and-a-b--c");
    assert_eq!(slug("Envoy: the plugin → RBAC"), "envoy-the-plugin--rbac");
}
