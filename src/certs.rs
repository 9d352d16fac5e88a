//! TLS set-up: the certificate, and the rustls server configurations built
//! from it. No sockets here; `net::handshake` runs the handshakes.
//!
//! With no certificate configured, a self-signed one for the host name is
//! generated into `<data-dir>/tls/` on first start and reused after, so
//! `ringmail serve` offers TLS with no set-up (clients will ask the user to
//! trust it; the fingerprint is logged so that can be checked). A configured
//! certificate is re-read on SIGHUP: new connections get the new one, open
//! sessions keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Server-side resumption state for stateful (TLS 1.2 session IDs) and
/// stateless (tickets) resumption; shared by all configurations and kept
/// across certificate reloads, so clients resume after a reload too.
struct Resumption {
    cache: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

/// The configurations in force, swapped as a whole on reload.
pub struct Contexts {
    /// IMAP (implicit TLS and STARTTLS): ALPN `imap` (RFC 9051 appendix; the
    /// IANA ALPN registry) when the client offers ALPN.
    pub imap: Arc<ServerConfig>,
    /// LMTP and SMTP STARTTLS (RFC 3207): no ALPN.
    pub smtp: Arc<ServerConfig>,
    /// POP3 (implicit TLS and STLS): ALPN `pop3` when the client offers ALPN.
    pub pop3: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:...`.
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

/// Where the certificate comes from; reloadable.
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    resumption: Resumption,
    current: RwLock<Arc<Contexts>>,
}

/// Sessions remembered for TLS 1.2 resumption by session ID.
const SESSION_CACHE: usize = 16_384;

impl Certs {
    /// Loads the configured certificate, or the generated one (creating it
    /// if need be).
    pub fn load(config: &Config) -> Result<Certs, String> {
        let (cert, key) = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => self_signed(&config.data_dir.join("tls"), &hostname(config))?,
            _ => return Err("tls.cert and tls.key must be given together".into()),
        };
        let tickets = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("cannot create the TLS ticket key: {e}"))?;
        let resumption = Resumption { cache: ServerSessionMemoryCache::new(SESSION_CACHE), tickets };
        let contexts = build(&cert, &key, &resumption)?;
        Ok(Certs { cert, key, resumption, current: RwLock::new(Arc::new(contexts)) })
    }

    /// The configurations for a new connection.
    pub fn current(&self) -> Arc<Contexts> {
        self.current.read().expect("tls lock").clone()
    }

    /// Re-reads the certificate and key. On error the old ones stay.
    pub fn reload(&self) -> Result<Arc<Contexts>, String> {
        let c = Arc::new(build(&self.cert, &self.key, &self.resumption)?);
        *self.current.write().expect("tls lock") = c.clone();
        Ok(c)
    }
}

fn hostname(config: &Config) -> String {
    config.delivery.hostname.clone().unwrap_or_else(crate::delivery::system_hostname)
}

fn build(cert_path: &Path, key_path: &Path, r: &Resumption) -> Result<Contexts, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert_path.display()))?;
    let Some(leaf) = chain.first() else { return Err(format!("no certificate in {}", cert_path.display())) };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| format!("cannot read the private key from {}: {e}", key_path.display()))?;
    let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
        let mut c = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("{} and {} do not make a usable certificate: {e}", cert_path.display(), key_path.display()))?;
        c.session_storage = r.cache.clone();
        c.ticketer = r.tickets.clone();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    Ok(Contexts { imap: config(&[b"imap"])?, smtp: config(&[])?, pop3: config(&[b"pop3"])?, fingerprint, cert_path: cert_path.to_path_buf() })
}

/// SHA-256 of a certificate, colon-separated hex (as `openssl x509 -fingerprint -sha256` prints it).
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The generated certificate in `dir`, created if missing.
fn self_signed(dir: &Path, host: &str) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    crate::datadir::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut names = vec![host.to_string(), "localhost".to_string()];
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot generate a certificate: {e}"))?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert, generated.cert.pem().as_bytes())?;
    tracing::warn!(
        cert = %cert.display(),
        fingerprint = %fingerprint(generated.cert.der()),
        "generated a self-signed TLS certificate; configure tls.cert and tls.key for one clients trust"
    );
    Ok((cert, key))
}

/// Writes a file readable by its owner only, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    r.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config { data_dir: dir.to_path_buf(), ..Config::default() }
    }

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = Certs::load(&config(dir.path())).unwrap().current();
        let b = Certs::load(&config(dir.path())).unwrap().current();
        assert_eq!(a.fingerprint, b.fingerprint, "the generated certificate is kept");
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(a.imap.alpn_protocols, vec![b"imap".to_vec()]);
        assert!(a.smtp.alpn_protocols.is_empty());
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn reload_picks_up_a_new_certificate_and_survives_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Certs::load(&config(dir.path())).unwrap();
        let before = tls.current().fingerprint.clone();
        std::fs::remove_file(dir.path().join("tls/cert.pem")).unwrap();
        std::fs::remove_file(dir.path().join("tls/key.pem")).unwrap();
        self_signed(&dir.path().join("tls"), "other.example").unwrap();
        let after = tls.reload().unwrap().fingerprint.clone();
        assert_ne!(before, after);
        std::fs::write(dir.path().join("tls/cert.pem"), b"not a certificate").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.current().fingerprint, after, "a failed reload keeps the working certificate");
    }

    #[test]
    fn cert_without_key_is_an_error() {
        let mut c = config(Path::new("/nonexistent"));
        c.tls.cert = Some("/x.pem".into());
        let Err(e) = Certs::load(&c) else { panic!("loaded a certificate without a key") };
        assert!(e.contains("together"), "{e}");
    }
}
