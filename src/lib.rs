//! ringmail: an IMAP4rev2/IMAP4rev1 mail server built for speed and durability.

pub mod auth;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod delivery;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod migrate;
pub mod mime;
pub mod net;
pub mod pop3;
pub mod proto;
pub mod sdnotify;
pub mod session;
pub mod signal;
pub mod store;
