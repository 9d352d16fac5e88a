//! The IMAP session state machine (RFC 9051 section 3): Not Authenticated,
//! Authenticated, Selected and Logout, driven by decoder events.
//!
//! It does no network I/O and reads no clock: the network layer feeds bytes,
//! calls [`Connection::step`], writes what lands in the [`Out`](crate::proto::Out)
//! buffer, and performs what the returned [`Step`] asks (check a password,
//! wait for the store to sync, start TLS, wait in IDLE). Time comes in as an
//! argument.
//!
//! Files, from the bottom up: `config`, `caps`, `sasl`, `flags` (leaves);
//! `selected` (the selected mailbox as one session sees it) and `search`
//! (search keys against messages); `walk` (a sequence set walked in
//! slices); `state` (the session's state and the
//! vocabulary of commands); `reply` (how commands answer); `cmd/` (one
//! file per command, and the table that dispatches to them); `connection`
//! (the decoder plus the session: the loop the network layer drives);
//! `driver` (that loop in memory, for tests, fuzzing and benches).

pub mod caps;
mod cmd;
mod config;
mod connection;
mod contexts;
pub mod driver;
pub mod flags;
mod notify;
mod reply;
mod results;
mod search;
mod selected;
mod sort;
mod state;
mod thread;
mod vanished;
mod walk;

pub use config::{ConnFacts, Enabled, SessionConfig};
pub use connection::{refusal, Connection, Snapshot};
pub use state::{Phase, Step};
