//! Image references, normalised as Docker and containerd do.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host (and port), lower-cased: `docker.io`, `registry.example.com:5000`.
    pub registry: String,
    /// Repository path: `library/nginx`.
    pub repository: String,
    /// The tag: as written, or `latest` when neither tag nor digest was written.
    pub tag: Option<String>,
    /// Whether `tag` is the implicit `latest`.
    pub implicit_tag: bool,
    /// The digest, `sha256:…`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference (`nginx`, `ghcr.io/org/app:1.2`, `repo@sha256:…`).
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("invalid image reference `{s}`: {why}");
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !valid_any_digest(d) {
                    return Err(bad("bad digest"));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag (before it, it is a registry port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if i >= last_slash => (
                name_tag.get(..i).unwrap_or(""),
                Some(name_tag.get(i + 1..).unwrap_or("").to_string()),
            ),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(bad("bad tag"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_ascii_lowercase(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        if registry.is_empty()
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad("bad registry"));
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "a repository is lower-case letters, digits and separators",
            ));
        }
        let implicit_tag = tag.is_none() && digest.is_none();
        Ok(ImageRef {
            registry,
            repository,
            tag: if implicit_tag {
                Some("latest".into())
            } else {
                tag
            },
            implicit_tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag
            && !(self.implicit_tag && self.digest.is_some())
        {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The OCI image-spec digest grammar: `algorithm:encoded`.
fn valid_any_digest(d: &str) -> bool {
    let Some((alg, enc)) = d.split_once(':') else {
        return false;
    };
    !alg.is_empty()
        && alg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
        && enc.len() >= 32
        && enc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
}

// ----------------------------------------------------------------------------------------

pub(super) fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}
