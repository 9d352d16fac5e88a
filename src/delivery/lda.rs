//! `ringmail deliver`: one message from standard input into a user's
//! mailbox, for a local MTA's pipe transport or a script (like dovecot-lda).
//!
//! Coordination with a running server: the data directory's lock decides.
//! If no server holds it, the command takes it, writes and syncs the message
//! itself, and lets go (a server starting meanwhile waits for it). If a
//! server holds it, the message is handed to that server over its LMTP
//! listener (whose address the server records in the lock file; a server
//! still starting gets a few seconds to do so), so the only writer of a store is always the one process that
//! has it open, and sessions in IDLE hear of the message at once.

use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::forward::{transaction, Rcpt};
use super::smtp::DeliveryError;
use crate::auth::passwd::normalize_user_name;
use crate::auth::UserDb;
use crate::config::Config;
use crate::datadir::DataDirLock;
use crate::store::{RealIo, Settings, Store, Target};

/// Why a delivery did not happen, as sysexits(3) codes for the MTA.
#[derive(Debug, PartialEq, Eq)]
pub enum LdaError {
    /// EX_NOUSER (67): bounce.
    NoUser,
    /// EX_CANTCREAT (73): the mailbox is full (quota); bounce. With
    /// `[quota] temporary` a full mailbox is a TempFail instead.
    OverQuota,
    /// EX_TEMPFAIL (75): the MTA retries later.
    TempFail(String),
}

impl LdaError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LdaError::NoUser => 67,
            LdaError::OverQuota => 73,
            LdaError::TempFail(_) => 75,
        }
    }
}

/// Turns what a pipe hands us into a message as IMAP serves it: drops a
/// leading mbox `From ` separator line, and when the input has Unix line
/// ends only (no CR at all, as MTAs' pipes deliver), makes them CRLF.
pub fn normalize_input(mut raw: Vec<u8>) -> Vec<u8> {
    if raw.starts_with(b"From ") {
        let end = memchr::memchr(b'\n', &raw).map_or(raw.len(), |i| i + 1);
        raw.drain(..end);
    }
    super::crlf_if_lf_only(raw)
}

/// Delivers `message` to `user` (into `mailbox` if it exists, else INBOX).
pub fn deliver(config: &Config, user: &str, mailbox: Option<&str>, from: &str, message: &[u8]) -> Result<(), LdaError> {
    let db = UserDb::open(&config.users_file()).map_err(|e| LdaError::TempFail(format!("cannot read the user file: {e}")))?;
    let user = normalize_user_name(user);
    if db.lookup(&user).is_none() {
        return Err(LdaError::NoUser);
    }
    match DataDirLock::acquire(&config.data_dir, Duration::ZERO).map_err(LdaError::TempFail)? {
        Some(_lock) => {
            let r = store_directly(config, Arc::new(db), &user, mailbox, from, message);
            // Run by root on the package's data directory: the files are the server's.
            crate::datadir::hand_back_mail(&config.data_dir, &crate::store::user_dir_name(&user), &[]).map_err(LdaError::TempFail)?;
            r
        }
        None => hand_to_server(config, &user, mailbox, from, message),
    }
}

fn store_directly(config: &Config, db: Arc<UserDb>, user: &str, mailbox: Option<&str>, from: &str, message: &[u8]) -> Result<(), LdaError> {
    let settings = Settings::configured(&config.store);
    let mut store = Store::new(Rc::new(RealIo::inline()), &config.data_dir.join("mail"), settings);
    store.set_quota_source(super::quota_source(db, &config.quota));
    let prefix = format!("Return-Path: <{from}>\r\nDelivered-To: {user}\r\n");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mb = super::store_copy(&store, user, mailbox, &[prefix.as_bytes(), message], now).map_err(|e| match e {
        DeliveryError::NoSuchUser => LdaError::NoUser,
        DeliveryError::Temporary(why) => LdaError::TempFail(why),
        DeliveryError::Full => LdaError::TempFail("not enough disk space".into()),
        DeliveryError::OverQuota if config.quota.temporary => LdaError::TempFail("mailbox is full (quota exceeded)".into()),
        DeliveryError::OverQuota => LdaError::OverQuota,
    })?;
    // The message, and a new user's list of mailboxes, made durable.
    let ticket = store.durable(Target::Mailbox(mb.clone()));
    store.run_pending();
    crate::store::exec::block_on(ticket).map_err(|e| LdaError::TempFail(format!("cannot sync the message: {e}")))?;
    // Leave the store tidy for the server that opens it next.
    let mut m = mb.borrow_mut();
    if m.needs_checkpoint() {
        let _ = m.checkpoint();
    }
    Ok(())
}

/// The address to reach a listener bound to `addr` from this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    a
}

/// Connects to the running server's LMTP listener, giving a server that is
/// still starting up a few seconds to publish its address.
fn connect_to_server(config: &Config) -> Result<(SocketAddr, TcpStream), LdaError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let err = match crate::datadir::published_lmtp(&config.data_dir).map(reachable) {
            Some(addr) => match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                Ok(s) => return Ok((addr, s)),
                Err(e) => format!("LMTP {addr}: {e}"),
            },
            None => "the server is running but has not published an LMTP listener to hand the message to".to_string(),
        };
        if std::time::Instant::now() >= deadline {
            return Err(LdaError::TempFail(err));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hand_to_server(config: &Config, user: &str, mailbox: Option<&str>, from: &str, message: &[u8]) -> Result<(), LdaError> {
    let (addr, stream) = connect_to_server(config)?;
    let rcpt = Rcpt { address: user.to_string(), mailbox: mailbox.map(str::to_string) };
    // Not a hop: this server decides where its users' mail goes.
    let answer = transaction(stream, addr, from, &[rcpt], message, Duration::from_secs(120), false).pop();
    match answer {
        Some(Ok(())) => Ok(()),
        Some(Err(DeliveryError::NoSuchUser)) => Err(LdaError::NoUser),
        Some(Err(DeliveryError::OverQuota)) => Err(LdaError::OverQuota),
        Some(Err(DeliveryError::Temporary(why))) => Err(LdaError::TempFail(why)),
        Some(Err(DeliveryError::Full)) => Err(LdaError::TempFail("not enough disk space".into())),
        None => Err(LdaError::TempFail(format!("LMTP {addr}: no answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_input_becomes_crlf_without_mbox_separator() {
        assert_eq!(normalize_input(b"From a@b Fri Nov 27\nSubject: x\n\nbody\n".to_vec()), b"Subject: x\r\n\r\nbody\r\n");
        // Input that already has CRs is left exactly as it is.
        assert_eq!(normalize_input(b"A: b\r\n\r\nx\ny".to_vec()), b"A: b\r\n\r\nx\ny");
        assert_eq!(normalize_input(b"no newline".to_vec()), b"no newline");
    }
}
