//! Bundle keys: `palisade keygen`, the key `compile --sign` reads, and the `--trusted-key`
//! entries `inspect` verifies against.

use std::io::Write as _;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding,
};
use palisade_engine::bundle::public_key_base64;
use palisade_engine::{BundleSigner, TrustedKeys};
use serde::Serialize;

use crate::args::Format;
use crate::exit::Exit;
use crate::report::{Failure, print_result};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KeygenResult {
    private_key: String,
    public_key_file: String,
    public_key: String,
}

/// `palisade keygen`: a fresh key from the OS's randomness.
pub fn keygen(prefix: &Path, output: Format) -> Result<Exit, Failure> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| Failure::message(format!("no randomness from the OS: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Failure::message(format!("cannot encode the key: {e}")))?;
    let private = prefix.with_extension("key");
    let public_file = prefix.with_extension("pub");
    write_private(&private, pem.as_bytes())?;
    let public = public_key_base64(&key.verifying_key());
    std::fs::write(&public_file, format!("{public}\n"))
        .map_err(|e| Failure::message(format!("cannot write `{}`: {e}", public_file.display())))?;
    let result = KeygenResult {
        private_key: private.display().to_string(),
        public_key_file: public_file.display().to_string(),
        public_key: public,
    };
    print_result(output, &result, || {
        format!(
            "wrote {} (keep it secret) and {}\npublic key: {}\n",
            result.private_key, result.public_key_file, result.public_key
        )
    });
    Ok(Exit::Ok)
}

/// A new file only its owner reads; an existing key is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| Failure::message(format!("cannot write `{}`: {e}", path.display())))
}

/// The signer `compile --sign KEY --key-id ID` uses.
pub fn signer(key: &Path, key_id: &str) -> Result<BundleSigner, Failure> {
    let text = std::fs::read_to_string(key)
        .map_err(|e| Failure::message(format!("cannot read key `{}`: {e}", key.display())))?;
    let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        Failure::message(format!(
            "`{}` is not an ed25519 private key: {e}",
            key.display()
        ))
        .with_help("make one with `palisade keygen -o NAME` (PKCS#8 PEM)")
    })?;
    if key_id.is_empty() {
        return Err(Failure::message("`--key-id` is empty"));
    }
    Ok(BundleSigner {
        key_id: key_id.to_string(),
        key,
    })
}

/// `--trusted-key ID=KEY` entries.
pub fn trusted_keys(entries: &[String]) -> Result<TrustedKeys, Failure> {
    let pairs = entries
        .iter()
        .map(|e| {
            e.split_once('=')
                .ok_or_else(|| Failure::message(format!("a trusted key is `ID=KEY`, got `{e}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    TrustedKeys::parse(pairs).map_err(|e| Failure::message(e.to_string()))
}
