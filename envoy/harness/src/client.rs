//! Minimal HTTP/1.1 and TCP clients over plaintext or rustls TLS (client certificate and SNI
//! optional), connecting from a chosen loopback source address.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use socket2::{Domain, Socket, Type};

use crate::certs::ClientIdentity;
use crate::error::{Context, Error, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

/// How the client talks to the listener.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plaintext TCP.
    Plain,
    /// TLS; `client` present means mutual TLS with that certificate.
    Tls {
        /// The SNI to send (none when absent).
        sni: Option<String>,
        /// The client certificate, if any.
        client: Option<Arc<ClientIdentity>>,
    },
}

/// An HTTP/1.1 request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Request method, sent verbatim.
    pub method: String,
    /// The `Host` header (`:authority`).
    pub host: String,
    /// The request target, sent verbatim (query included).
    pub path: String,
    /// Extra headers, repeatable.
    pub headers: Vec<(String, String)>,
}

/// Sends one request on a fresh connection (`Connection: close`) and returns the status code.
pub fn send_http(
    source: Option<IpAddr>,
    to: SocketAddr,
    transport: &Transport,
    req: &HttpRequest,
) -> Result<u16> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        req.method, req.path, req.host
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (mut stream, _) = connect(source, to, transport)?;
    stream
        .write_all(head.as_bytes())
        .context(|| format!("writing request to {to}"))?;
    stream.flush().context(|| "flush".into())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(buf.get(..line_end).unwrap_or_default());
            let code = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| Error(format!("bad status line `{line}` from {to}")))?;
            return Ok(code);
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Error(format!(
                    "connection to {to} closed before a status line"
                )));
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) => return Err(Error(format!("reading from {to}: {e}"))),
        }
    }
}

/// A whole HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (everything after the head until the server closed; not de-chunked).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Like [`send_http`], but reads the whole response (`Connection: close`) and returns its
/// status, headers and body.
pub fn send_http_full(
    source: Option<IpAddr>,
    to: SocketAddr,
    transport: &Transport,
    req: &HttpRequest,
) -> Result<HttpResponse> {
    send_http_from(source, to, transport, req).map(|(r, _)| r)
}

/// Like [`send_http_full`], and also returns the client's end of the connection (the
/// address and port Envoy sees as `source.address`).
pub fn send_http_from(
    source: Option<IpAddr>,
    to: SocketAddr,
    transport: &Transport,
    req: &HttpRequest,
) -> Result<(HttpResponse, SocketAddr)> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        req.method, req.path, req.host
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (mut stream, local) = connect(source, to, transport)?;
    stream
        .write_all(head.as_bytes())
        .context(|| format!("writing request to {to}"))?;
    stream.flush().context(|| "flush".into())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Stop once a `content-length` body is complete rather than waiting for the close:
        // Envoy closes a `Connection: close` stream only after its delayed-close timeout (1 s)
        // unless the client closes first.
        if complete(&buf) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            // TLS peers may close without close_notify: keep what arrived.
            Err(_) if !buf.is_empty() => break,
            Err(e) => return Err(Error(format!("reading from {to}: {e}"))),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| Error(format!("bad status line `{status_line}` from {to}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((
        HttpResponse {
            status,
            headers,
            body: body.to_string(),
        },
        local,
    ))
}

/// Whether `buf` holds a whole response head and the `content-length` body that follows it.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default());
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() >= end + 4 + len)
}

/// Opens a connection, writes a short line and reports whether any bytes came back (`true`, the
/// listener's direct response) or the connection was closed or reset with nothing (`false`).
pub fn probe_tcp(source: Option<IpAddr>, to: SocketAddr, transport: &Transport) -> Result<bool> {
    probe_tcp_from(source, to, transport).map(|(allowed, _)| allowed)
}

/// Like [`probe_tcp`], and also returns the client's end of the connection.
pub fn probe_tcp_from(
    source: Option<IpAddr>,
    to: SocketAddr,
    transport: &Transport,
) -> Result<(bool, SocketAddr)> {
    let (mut stream, local) = connect(source, to, transport)?;
    if stream
        .write_all(b"palisade-harness-probe\n")
        .and_then(|()| stream.flush())
        .is_err()
    {
        return Ok((false, local));
    }
    let mut chunk = [0u8; 256];
    match stream.read(&mut chunk) {
        Ok(n) => Ok((n > 0, local)),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Err(Error(format!("no answer from {to} within {TIMEOUT:?}")))
        }
        Err(_) => Ok((false, local)),
    }
}

/// A connected stream, plaintext or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects, returning the stream and its local address.
fn connect(
    source: Option<IpAddr>,
    to: SocketAddr,
    transport: &Transport,
) -> Result<(Stream, SocketAddr)> {
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, None)
        .context(|| "creating socket".into())?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())
            .context(|| format!("binding source address {ip}"))?;
    }
    sock.connect_timeout(&to.into(), TIMEOUT)
        .context(|| format!("connecting to {to}"))?;
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(TIMEOUT))
        .context(|| "timeout".into())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .context(|| "timeout".into())?;
    tcp.set_nodelay(true).context(|| "nodelay".into())?;
    let local = tcp.local_addr().context(|| "local address".into())?;
    match transport {
        Transport::Plain => Ok((Stream::Plain(tcp), local)),
        Transport::Tls { sni, client } => {
            let config = tls_config(sni.is_some(), client.as_deref())?;
            let name = match sni {
                Some(s) => ServerName::try_from(s.clone()).context(|| format!("SNI `{s}`"))?,
                None => ServerName::try_from("localhost").context(|| "server name".into())?,
            };
            let conn =
                ClientConnection::new(Arc::new(config), name).context(|| "TLS client".into())?;
            let mut s = StreamOwned::new(conn, tcp);
            // Finish the handshake now so that handshake failures are reported as such.
            while s.conn.is_handshaking() {
                s.conn
                    .complete_io(&mut s.sock)
                    .context(|| format!("TLS handshake with {to}"))?;
            }
            Ok((Stream::Tls(Box::new(s)), local))
        }
    }
}

fn tls_config(sni: bool, client: Option<&ClientIdentity>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context(|| "TLS versions".into())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)));
    let mut config = match client {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key())
            .context(|| format!("client certificate `{}`", id.uri))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = sni;
    Ok(config)
}

/// Test-only server verification: the listener's certificate is ours, and SNI values under
/// test are arbitrary names, so any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
