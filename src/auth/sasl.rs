//! SASL for IMAP AUTHENTICATE and POP3 AUTH: the mechanisms offered (PLAIN, RFC 4616; LOGIN)
//! and the base64 of the exchange (RFC 9051 6.2.2).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A mechanism part way through its exchange.
pub enum Mechanism {
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPassword(Vec<u8>),
}

/// A client response; `=` is the empty one (RFC 4959).
pub fn decode(b: &[u8]) -> Option<Vec<u8>> {
    if b == b"=" {
        return Some(Vec::new());
    }
    STANDARD.decode(b).ok()
}

/// A server challenge.
pub fn encode(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// PLAIN's `authzid NUL authcid NUL password`: (authzid, user, password).
pub fn plain(r: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = r.split(|&b| b == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((authz, user, pass))
}
