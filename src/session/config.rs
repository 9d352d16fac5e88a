//! What a session is configured with and what it knows of its connection.

use std::sync::Arc;

use crate::proto::Limits;
use crate::store::metadata;

/// Settings shared by every session of a listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub limits: Arc<Limits>,
    /// Limits before authentication (see [`Limits::PRE_AUTH`]).
    pub pre_auth: Arc<Limits>,
    /// Failed logins on one connection before it is closed with BYE.
    pub max_auth_failures: u32,
    /// STARTTLS can be offered (TLS is configured and the connection is cleartext).
    pub starttls: bool,
    /// What a user may keep in METADATA annotations (RFC 5464).
    pub metadata: metadata::Limits,
    /// The server entry `/shared/admin` (RFC 5464 3.2.1.1), if configured.
    pub admin: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            limits: Arc::new(Limits::DEFAULT),
            pre_auth: Arc::new(Limits::PRE_AUTH),
            max_auth_failures: 3,
            starttls: false,
            metadata: metadata::Limits::default(),
            admin: None,
        }
    }
}

/// Facts about the connection that decide what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnFacts {
    /// The connection is encrypted.
    pub tls: bool,
    /// A password may be sent on it in the clear (loopback or a trusted network).
    pub cleartext_ok: bool,
    /// COMPRESS=DEFLATE is on (RFC 4978).
    pub compressed: bool,
}

/// Extensions the client turned on with ENABLE (RFC 5161).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    pub rev2: bool,
    pub utf8: bool,
    pub condstore: bool,
    /// QRESYNC (RFC 7162 3.2.3): expunges are told as VANISHED.
    pub qresync: bool,
}
