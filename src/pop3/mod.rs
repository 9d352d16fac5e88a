//! POP3 (RFC 1939, with CAPA and RESP-CODES from RFC 2449 and RFC 3206,
//! STLS from RFC 2595, AUTH from RFC 5034) on the same store as IMAP,
//! sans-io: [`command`] parses lines, [`Session`] answers them and asks the
//! network layer (`net/pop3_conn.rs`) for what needs I/O.

pub mod command;
mod session;
#[cfg(test)]
mod tests;

pub use session::{Facts, Maildrop, OpenError, Session, Snapshot, Step, BUDGET, MAX_LINE};
