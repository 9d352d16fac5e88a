//! TLS for the load tool (`--tls`, `--starttls`): rustls's buffered
//! `ClientConnection`, driven over the monoio socket by the same helpers the
//! server uses (`ringmail_kit::tls`).
//!
//! The server's certificate is not verified: the tool measures servers that
//! often run on a self-signed certificate (ringmail's first start, a test
//! Dovecot), and verification cost is the client's, not the server's. The
//! handshake itself is complete (key exchange, signature by the server's
//! key), so its cost to the server is measured in full.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// How connections are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Plain,
    /// Implicit TLS: handshake right after connecting (port 993).
    Implicit,
    /// STARTTLS after the greeting.
    StartTls,
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration: no verification, ALPN `alpn` (`imap`, or
/// `pop3` for POP3), and session resumption only if `resume` (by default
/// every handshake is a full one, the server's worst case).
pub fn client_config(resume: bool, alpn: &[u8]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(c)
}

pub fn new_connection(config: &Arc<ClientConfig>, server: std::net::IpAddr) -> io::Result<ClientConnection> {
    ClientConnection::new(config.clone(), ServerName::IpAddress(server.into())).map_err(io::Error::other)
}
