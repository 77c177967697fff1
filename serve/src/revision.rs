//! One revision: read the inputs, validate, compile, and encode (and sign) one bundle per
//! scope served.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use palisade_engine::bundle::hex;
use palisade_engine::{
    BundleInfo, BundleSigner, Diagnostic, Errors, Options, Scope, compile, encode_signed, load,
};

use crate::inputs::read_sources;

/// What is compiled and how: the inputs, the engine options, the key, the scopes.
#[derive(Debug)]
pub struct Recipe {
    /// Policy and inventory files or directories.
    pub paths: Vec<PathBuf>,
    /// The engine's options (mesh settings).
    pub options: Options,
    /// The key bundles are signed with; `None`: unsigned.
    pub signer: Option<BundleSigner>,
    /// The scopes a bundle is made for.
    pub scopes: Vec<Scope>,
}

/// The bundles of one successful compile.
#[derive(Debug, Clone)]
pub struct Built {
    /// The revision: the SHA-256 of the payload (hex), the same for every scope since each
    /// scope's bundle still holds the whole mesh's compiled policies.
    pub revision: String,
    /// One bundle per scope, in the recipe's order.
    pub bundles: Vec<(Scope, Vec<u8>)>,
    /// How many input files were read.
    pub inputs: usize,
}

/// The outcome of one compile and how long it took.
#[derive(Debug)]
pub struct Attempt {
    /// The bundles, or every problem found.
    pub result: Result<Built, Errors>,
    /// Wall time from reading the first file to the last bundle signed.
    pub took: Duration,
}

impl Recipe {
    /// Reads, validates, compiles and signs. Blocking: run it off the async runtime.
    pub fn build(&self) -> Attempt {
        let started = Instant::now();
        let result = self.try_build();
        Attempt {
            result,
            took: started.elapsed(),
        }
    }

    fn try_build(&self) -> Result<Built, Errors> {
        let sources = read_sources(&self.paths).map_err(|(e, _)| e)?;
        let set = load(&sources)?;
        let engine = compile(&set, &self.options)?;
        let mut bundles = Vec::with_capacity(self.scopes.len());
        let mut revision = String::new();
        for scope in &self.scopes {
            let mut info = BundleInfo {
                scope: scope.clone(),
                inputs: Vec::new(),
            };
            for source in &sources {
                info.input(&source.name, source.text.as_bytes());
            }
            let bytes = encode_signed(&engine, &info, self.signer.as_ref())
                .map_err(|e| Errors::one(Diagnostic::new(e.to_string())))?;
            let parts = palisade_engine::bundle::parts(&bytes)
                .map_err(|e| Errors::one(Diagnostic::new(e.to_string())))?;
            revision = hex(&parts.manifest.revision);
            bundles.push((scope.clone(), bytes));
        }
        Ok(Built {
            revision,
            bundles,
            inputs: sources.len(),
        })
    }
}
