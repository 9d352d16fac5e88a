//! The handshake of a backend's control port (`ringmail user move` copies a
//! user's files between backends over it): both sides prove they know the
//! cluster's shared secret without sending it, each answering the other's
//! random challenge with HMAC-SHA256 under the secret. A recorded exchange
//! is worth nothing later: the challenges are fresh each time.
//!
//! The server sends its challenge; the client answers it and sends its own;
//! the server checks and answers the client's. The traffic after that is
//! not encrypted: the control port belongs on the backends' own network.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const CHALLENGE: usize = 32;
pub const PROOF: usize = 32;

/// A shared secret shorter than this is refused (the file is misconfigured).
pub const MIN_SECRET: usize = 16;

fn proof(secret: &[u8], label: &[u8], challenge: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(challenge);
    mac
}

const CLIENT: &[u8] = b"ringmail control client v1\0";
const SERVER: &[u8] = b"ringmail control server v1\0";

pub fn challenge() -> [u8; CHALLENGE] {
    rand::random()
}

/// The client's answer to the server's challenge.
pub fn client_proof(secret: &[u8], server_challenge: &[u8]) -> [u8; PROOF] {
    proof(secret, CLIENT, server_challenge).finalize().into_bytes().into()
}

/// The server's answer to the client's challenge.
pub fn server_proof(secret: &[u8], client_challenge: &[u8]) -> [u8; PROOF] {
    proof(secret, SERVER, client_challenge).finalize().into_bytes().into()
}

/// Checks a client's answer, in constant time.
pub fn client_is_genuine(secret: &[u8], server_challenge: &[u8], answer: &[u8]) -> bool {
    proof(secret, CLIENT, server_challenge).verify_slice(answer).is_ok()
}

/// Checks the server's answer, in constant time.
pub fn server_is_genuine(secret: &[u8], client_challenge: &[u8], answer: &[u8]) -> bool {
    proof(secret, SERVER, client_challenge).verify_slice(answer).is_ok()
}

/// Reads the shared secret from its file (surrounding white space dropped).
pub fn load_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let s = std::fs::read(path).map_err(|e| format!("cannot read the cluster secret {}: {e}", path.display()))?;
    let s = s.trim_ascii().to_vec();
    if s.len() < MIN_SECRET {
        return Err(format!("the cluster secret {} is shorter than {MIN_SECRET} bytes", path.display()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_proves_the_secret_and_a_proof_fits_only_its_challenge_and_role() {
        let secret = b"0123456789abcdef-shared";
        let (sc, cc) = (challenge(), challenge());
        assert_ne!(sc, cc);
        let cp = client_proof(secret, &sc);
        assert!(client_is_genuine(secret, &sc, &cp));
        assert!(!client_is_genuine(b"0123456789abcdef-other", &sc, &cp), "another secret");
        assert!(!client_is_genuine(secret, &cc, &cp), "another challenge");
        assert!(!client_is_genuine(secret, &sc, &cp[..31]), "cut short");
        let sp = server_proof(secret, &cc);
        assert!(server_is_genuine(secret, &cc, &sp));
        assert!(!server_is_genuine(secret, &cc, &client_proof(secret, &cc)), "a client's proof is not a server's");
    }
}
