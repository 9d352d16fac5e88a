//! The network layer: workers, listeners, connections. It moves bytes and
//! connections; the protocol lives in `session` and `delivery`, the mail in
//! `store`.
//!
//! One pinned worker per core, each with its own monoio runtime (io_uring, or
//! epoll where io_uring is unavailable) and its own SO_REUSEPORT listener on
//! every address. Users are sharded across workers ([`ServerCtx::home`]):
//! after login a connection moves to its user's worker, so all of a user's
//! sessions and deliveries share one thread and the store needs no locks.
//!
//! Files, from the bottom up: `context` (what tasks share), `guard`,
//! `pool`, `spool`, `iovec`, `handshake`, `compress` (leaves); `deliver`, `imap_conn`,
//! `smtp_conn` (one task per connection or delivery); `worker` (the
//! runtime of one core); `server` (start, signals, stop).

mod auth_socket;
mod cluster;
mod compress;
mod context;
mod control;
mod deliver;
pub mod fdlimit;
mod guard;
mod handshake;
mod imap_conn;
mod iovec;
mod listen;
mod login;
mod lookups;
mod metrics_http;
mod pool;
mod pop3_conn;
mod proxy;
mod relocate;
mod server;
mod smtp_conn;
pub mod spool;
mod worker;

pub use server::{choose_driver, Server};
