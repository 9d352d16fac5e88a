//! Password hash schemes in Dovecot's `{SCHEME}hash` notation.
//!
//! New passwords are hashed with argon2id. For users who bring a Dovecot
//! passwd-file we also verify SHA512-CRYPT (`$6$`), SHA256-CRYPT (`$5$`),
//! BLF-CRYPT (bcrypt `$2y$`/`$2b$`/`$2a$`) and PLAIN/CLEAR. Hashing is slow by
//! design: callers run these functions off the event loop.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeError {
    Unsupported(String),
    Malformed,
}

impl std::fmt::Display for SchemeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemeError::Unsupported(s) => write!(f, "unsupported password scheme {s}"),
            SchemeError::Malformed => f.write_str("malformed password hash"),
        }
    }
}

/// Splits `{SCHEME}rest`; a hash without braces is treated as Dovecot does
/// with `default_pass_scheme = CRYPT`: the crypt prefix decides.
fn split(stored: &str) -> (String, &str) {
    if let Some(rest) = stored.strip_prefix('{') {
        if let Some(end) = rest.find('}') {
            return (rest[..end].to_ascii_uppercase(), &rest[end + 1..]);
        }
    }
    ("CRYPT".to_string(), stored)
}

/// Hashes a new password: `{ARGON2ID}$argon2id$v=19$m=...`.
pub fn hash_password(password: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default().hash_password(password, &salt).expect("argon2 with default parameters cannot fail");
    format!("{{ARGON2ID}}{hash}")
}

/// Checks `password` against a stored `{SCHEME}hash`.
pub fn verify_password(stored: &str, password: &[u8]) -> Result<bool, SchemeError> {
    let (scheme, hash) = split(stored);
    match scheme.as_str() {
        "ARGON2ID" | "ARGON2I" => {
            let parsed = PasswordHash::new(hash).map_err(|_| SchemeError::Malformed)?;
            Ok(Argon2::default().verify_password(password, &parsed).is_ok())
        }
        "SHA512-CRYPT" | "SHA256-CRYPT" | "BLF-CRYPT" | "CRYPT" => verify_crypt(hash, password),
        "PLAIN" | "CLEAR" | "CLEARTEXT" => Ok(constant_time_eq(hash.as_bytes(), password)),
        other => Err(SchemeError::Unsupported(other.to_string())),
    }
}

fn verify_crypt(hash: &str, password: &[u8]) -> Result<bool, SchemeError> {
    // The crypt formats take text passwords; a non-UTF-8 password cannot match.
    let Ok(pw) = std::str::from_utf8(password) else { return Ok(false) };
    if hash.starts_with("$6$") {
        Ok(sha_crypt::sha512_check(pw, hash).is_ok())
    } else if hash.starts_with("$5$") {
        Ok(sha_crypt::sha256_check(pw, hash).is_ok())
    } else if hash.starts_with("$2") {
        bcrypt::verify(pw, hash).map_err(|_| SchemeError::Malformed)
    } else if hash.starts_with("$argon2") {
        verify_password(&format!("{{ARGON2ID}}{hash}"), password)
    } else {
        Err(SchemeError::Unsupported("CRYPT variant".into()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_roundtrip() {
        let h = hash_password(b"s3cret");
        assert!(h.starts_with("{ARGON2ID}$argon2id$"));
        assert_eq!(verify_password(&h, b"s3cret"), Ok(true));
        assert_eq!(verify_password(&h, b"wrong"), Ok(false));
    }

    #[test]
    fn dovecot_schemes() {
        // Produced by `doveadm pw -s SHA512-CRYPT -p pass` style hashing.
        let sha = sha_crypt::sha512_simple("pass", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
        assert_eq!(verify_password(&format!("{{SHA512-CRYPT}}{sha}"), b"pass"), Ok(true));
        assert_eq!(verify_password(&format!("{{SHA512-CRYPT}}{sha}"), b"nope"), Ok(false));
        let blf = bcrypt::hash("pass", 4).unwrap();
        assert_eq!(verify_password(&format!("{{BLF-CRYPT}}{blf}"), b"pass"), Ok(true));
        assert_eq!(verify_password("{PLAIN}pass", b"pass"), Ok(true));
        assert_eq!(verify_password("{PLAIN}pass", b"pas"), Ok(false));
        assert!(matches!(verify_password("{MD5}x", b"x"), Err(SchemeError::Unsupported(_))));
        assert_eq!(verify_password("{ARGON2ID}garbage", b"x"), Err(SchemeError::Malformed));
    }
}
