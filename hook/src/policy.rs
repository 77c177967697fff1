//! Where the hook's policy comes from: a compiled bundle (`--bundle`, `PALISADE_BUNDLE`) or
//! YAML files (`--policy <file|dir>`, `PALISADE_POLICY`; a directory's `*.yaml` and `*.yml`
//! in name order).

use std::fs;
use std::path::{Path, PathBuf};

use palisade_engine::SourceFile;

/// The policy, read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A compiled bundle's bytes.
    Bundle(Vec<u8>),
    /// YAML files.
    Yaml(Vec<SourceFile>),
}

/// Where to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyPath {
    /// A bundle file.
    Bundle(PathBuf),
    /// A YAML file or a directory of them.
    Yaml(PathBuf),
}

impl PolicyPath {
    /// Reads the policy; a missing file or an empty directory is an error.
    pub fn read(&self) -> Result<PolicySource, String> {
        match self {
            PolicyPath::Bundle(p) => fs::read(p)
                .map(PolicySource::Bundle)
                .map_err(|e| format!("cannot read the policy bundle `{}`: {e}", p.display())),
            PolicyPath::Yaml(p) => read_yaml(p).map(PolicySource::Yaml),
        }
    }
}

fn read_yaml(path: &Path) -> Result<Vec<SourceFile>, String> {
    let meta = fs::metadata(path)
        .map_err(|e| format!("cannot read the policy `{}`: {e}", path.display()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut paths: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|e| format!("cannot list the policy directory `{}`: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(format!(
                "the policy directory `{}` has no `.yaml` or `.yml` file",
                path.display()
            ));
        }
        for p in paths {
            files.push(read_one(&p)?);
        }
    } else {
        files.push(read_one(path)?);
    }
    Ok(files)
}

fn read_one(p: &Path) -> Result<SourceFile, String> {
    let text = fs::read_to_string(p)
        .map_err(|e| format!("cannot read the policy `{}`: {e}", p.display()))?;
    Ok(SourceFile::new(p.display().to_string(), text))
}
