//! Moving mail in and out of ringmail: `ringmail import` from a Dovecot
//! Maildir, an mbox file or any IMAP server, keeping UIDVALIDITY and UIDs so
//! that clients (and mbsync's state files) carry on without downloading
//! again, and `ringmail export` to a Maildir that Dovecot reads.
//!
//! The pieces, each in its own file:
//! - [`model`]: what a source lists (mailboxes, messages) and the operations
//!   an import asks of the store ([`Op`], [`Reply`]);
//! - [`maildir`], [`mbox`], [`imap`]: the sources;
//! - [`apply`]: the operations run against a [`crate::store::Store`], the
//!   same code offline (the command holds the data directory) and on the
//!   owning worker of a running server;
//! - [`target`]: where the operations go (the local store or the server's
//!   control socket);
//! - [`engine`]: one import run, mailbox by mailbox, in durable batches,
//!   resumable; [`state`] remembers what came from where;
//! - [`progress`]: a bar on a terminal, lines elsewhere;
//! - [`export`]: the Maildir writer;
//! - [`relocate`], [`userfiles`], [`mover`]: `ringmail user move`, which
//!   copies a user's store to another backend of a cluster file by file.

pub mod apply;
pub mod command;
pub mod control_port;
pub mod engine;
pub mod export;
pub mod imap;
pub mod maildir;
pub mod mbox;
pub mod model;
pub mod mover;
pub mod progress;
pub mod relocate;
pub mod state;
pub mod target;
pub mod userfiles;
pub mod wire;

pub use model::{Op, Reply};
