//! Users and authentication: the passwd-file, password schemes, a cache of
//! recently verified credentials, and the limits that slow down guessing.
//!
//! Verifying a password hash takes tens of milliseconds on purpose, so it
//! never runs on a worker's event loop: [`Authenticator::verify`] answers from
//! the cache when it can and otherwise hands the work to a blocking thread.

pub mod dovecot_protocol;
pub mod limiter;
pub mod passwd;
pub mod quota_rule;
pub mod sasl;
pub mod scheme;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use passwd::UserDb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// The canonical (lower-case) user name.
    Ok(String),
    Failed,
    /// The user database could not be consulted (answer NO [UNAVAILABLE]).
    Unavailable,
}

struct CacheEntry {
    /// The stored hash this entry was verified against; a changed password
    /// (new hash) makes the entry useless.
    stored: Arc<str>,
    digest: [u8; 32],
    expires: Instant,
}

/// Verified credentials kept for `ttl`, keyed by user name. Only a salted
/// digest of the password is held, never the password.
pub struct Authenticator {
    db: Arc<UserDb>,
    ttl: Duration,
    secret: [u8; 32],
    cache: Mutex<HashMap<String, CacheEntry>>,
}

/// Cached entries kept at most; beyond this the cache is emptied and refills.
const CACHE_MAX: usize = 200_000;

impl Authenticator {
    pub fn new(db: Arc<UserDb>, ttl: Duration) -> Self {
        Authenticator { db, ttl, secret: rand::random(), cache: Mutex::new(HashMap::new()) }
    }

    pub fn db(&self) -> &Arc<UserDb> {
        &self.db
    }

    fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(password);
        h.finalize().into()
    }

    /// Answers from the cache of verified credentials: Some(true) on a hit,
    /// None when the slow path must run. Also returns the stored hash.
    pub fn check_cached(&self, user: &str, password: &[u8]) -> (Option<bool>, Option<Arc<str>>) {
        let name = passwd::normalize_user_name(user);
        let Some(stored) = self.db.lookup(&name) else { return (Some(false), None) };
        let cache = self.cache.lock().expect("auth cache lock");
        if let Some(e) = cache.get(&name) {
            let same_hash = Arc::ptr_eq(&e.stored, &stored) || *e.stored == *stored;
            if same_hash && e.expires > Instant::now() && e.digest == self.digest(password) {
                return (Some(true), Some(stored));
            }
        }
        (None, Some(stored))
    }

    /// The slow path: checks the hash (call from a blocking thread) and
    /// remembers a success.
    pub fn verify_slow(&self, user: &str, password: &[u8], stored: &str) -> AuthResult {
        match scheme::verify_password(stored, password) {
            Ok(true) => {
                let name = passwd::normalize_user_name(user);
                let mut cache = self.cache.lock().expect("auth cache lock");
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(name.clone(), CacheEntry { stored: Arc::from(stored), digest: self.digest(password), expires: Instant::now() + self.ttl });
                AuthResult::Ok(name)
            }
            Ok(false) => AuthResult::Failed,
            Err(e) => {
                tracing::error!(user, error = %e, "cannot verify password hash");
                AuthResult::Failed
            }
        }
    }

    /// Verifies synchronously (CLI tools and tests).
    pub fn verify_blocking(&self, user: &str, password: &[u8]) -> AuthResult {
        match self.check_cached(user, password) {
            (Some(true), _) => AuthResult::Ok(passwd::normalize_user_name(user)),
            (_, None) => AuthResult::Failed,
            (_, Some(stored)) => self.verify_slow(user, password, &stored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hits_and_invalidates_on_new_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "bob:{PLAIN}one\n").unwrap();
        let db = Arc::new(UserDb::open(&p).unwrap());
        let a = Authenticator::new(db.clone(), Duration::from_secs(60));
        assert_eq!(a.check_cached("bob", b"one").0, None);
        assert_eq!(a.verify_blocking("Bob", b"one"), AuthResult::Ok("bob".into()));
        assert_eq!(a.check_cached("bob", b"one").0, Some(true));
        assert_eq!(a.check_cached("bob", b"two").0, None);
        assert_eq!(a.verify_blocking("nobody", b"x"), AuthResult::Failed);
        // Replaced as `ringmail user passwd` does (a new file renamed over it).
        std::fs::write(dir.path().join("new"), "bob:{PLAIN}two\n").unwrap();
        std::fs::rename(dir.path().join("new"), &p).unwrap();
        assert_eq!(a.check_cached("bob", b"one").0, None);
        assert_eq!(a.verify_blocking("bob", b"one"), AuthResult::Failed);
        assert_eq!(a.verify_blocking("bob", b"two"), AuthResult::Ok("bob".into()));
    }
}
