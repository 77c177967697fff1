//! Test certificates made at run time with `rcgen`: a CA, the listener's server certificate,
//! and client certificates whose URI SAN is a SPIFFE ID.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, Ia5String, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Context, Error, Result};

/// A client certificate and its key, in DER, ready for rustls.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The URI SAN (the peer principal as Envoy sees it).
    pub uri: String,
    /// Certificate chain (leaf only).
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ClientIdentity {
    /// The private key for rustls.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A CA that signs the server certificate and any number of client certificates (cached by URI).
pub struct Pki {
    ca: Certificate,
    ca_key: KeyPair,
    /// PEM files Envoy reads: `ca.pem`, `server.pem`, `server-key.pem`.
    pub ca_file: PathBuf,
    /// The server certificate (SAN `localhost`, `*.local`-style names are not checked by the client).
    pub server_cert_file: PathBuf,
    /// The server key.
    pub server_key_file: PathBuf,
    clients: Mutex<BTreeMap<String, std::sync::Arc<ClientIdentity>>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Makes a CA and a server certificate, writing the PEM files Envoy needs into `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).context(|| "ca params".into())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "palisade harness test CA");
        let ca_key = KeyPair::generate().context(|| "ca key".into())?;
        let ca = params.self_signed(&ca_key).context(|| "ca cert".into())?;

        let mut sp = CertificateParams::new(vec!["localhost".to_string()])
            .context(|| "server params".into())?;
        sp.distinguished_name
            .push(DnType::CommonName, "palisade harness server");
        let server_key = KeyPair::generate().context(|| "server key".into())?;
        let server = sp
            .signed_by(&server_key, &ca, &ca_key)
            .context(|| "server cert".into())?;

        let ca_file = dir.join("ca.pem");
        let server_cert_file = dir.join("server.pem");
        let server_key_file = dir.join("server-key.pem");
        write(&ca_file, &ca.pem())?;
        write(&server_cert_file, &server.pem())?;
        write(&server_key_file, &server_key.serialize_pem())?;
        Ok(Pki {
            ca,
            ca_key,
            ca_file,
            server_cert_file,
            server_key_file,
            clients: Mutex::new(BTreeMap::new()),
        })
    }

    /// A client certificate whose only URI SAN is `uri` (e.g. a SPIFFE ID), made once per URI.
    pub fn client(&self, uri: &str) -> Result<std::sync::Arc<ClientIdentity>> {
        let mut cache = self
            .clients
            .lock()
            .map_err(|_| Error::new("client cert cache poisoned"))?;
        if let Some(c) = cache.get(uri) {
            return Ok(c.clone());
        }
        let mut p =
            CertificateParams::new(Vec::<String>::new()).context(|| "client params".into())?;
        p.distinguished_name
            .push(DnType::CommonName, "palisade harness client");
        let san = Ia5String::try_from(uri.to_string()).context(|| format!("URI SAN `{uri}`"))?;
        p.subject_alt_names.push(SanType::URI(san));
        let key = KeyPair::generate().context(|| "client key".into())?;
        let cert = p
            .signed_by(&key, &self.ca, &self.ca_key)
            .context(|| format!("client cert for `{uri}`"))?;
        let id = std::sync::Arc::new(ClientIdentity {
            uri: uri.to_string(),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        });
        cache.insert(uri.to_string(), id.clone());
        Ok(id)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).context(|| format!("writing {}", path.display()))
}
