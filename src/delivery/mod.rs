//! Mail delivery: the LMTP/SMTP protocol engine ([`smtp`]), who is local
//! ([`LocalDirectory`]), and storing one delivered copy into a user's mailbox
//! ([`store_copy`]). The network side lives in `net::smtp` and
//! `net::deliver`, the `ringmail deliver` command in [`lda`].

pub mod forward;
pub mod lda;
pub mod smtp;

use std::rc::Rc;
use std::sync::Arc;

use crate::auth::UserDb;
use crate::config::QuotaConfig;
use crate::store::{MailboxRef, QuotaSource, Store, StoreError};
use smtp::{DeliveryError, Dialect, Directory};

/// Users from the passwd-file; domains from the configuration.
pub struct LocalDirectory {
    pub users: Arc<UserDb>,
    /// Lower-case domains whose mail is ours. Empty: for LMTP every domain
    /// (the MTA in front decided), for SMTP only the host name and `localhost`.
    pub domains: Vec<String>,
    pub hostname: String,
}

impl Directory for LocalDirectory {
    fn user_exists(&self, user: &str) -> bool {
        self.users.lookup(user).is_some()
    }

    fn is_local_domain(&self, domain: &str, dialect: Dialect) -> bool {
        if self.domains.is_empty() {
            return dialect == Dialect::Lmtp || domain.eq_ignore_ascii_case(&self.hostname) || domain.eq_ignore_ascii_case("localhost");
        }
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Writes one copy (`parts` concatenated) into `mailbox` of `user`, or into
/// INBOX when that mailbox does not exist (as dovecot-lda does without
/// autocreate). The copy becomes visible and durable at the mailbox's next
/// commit, which the caller awaits before acknowledging.
pub fn store_copy(store: &Store, user: &str, mailbox: Option<&str>, parts: &[&[u8]], now: i64) -> Result<MailboxRef, DeliveryError> {
    let temp = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(user, error = %e, "{what}");
        DeliveryError::Temporary(what.to_string())
    };
    let store_err = |e: StoreError| match e {
        StoreError::Full => DeliveryError::Full,
        StoreError::OverQuota => DeliveryError::OverQuota,
        StoreError::Moving => DeliveryError::Temporary("the mailbox is moving to another server".into()),
        e => temp("cannot store the message", &e),
    };
    if store.is_held(user) {
        // `ringmail user move`: the MTA retries, and finds the new home.
        return Err(DeliveryError::Temporary("the mailbox is moving to another server".into()));
    }
    let u = store.user(user, now).map_err(|e| temp("cannot open the mail store", &e))?;
    let mb = match mailbox.map(|m| u.mailbox(m)) {
        Some(Ok(mb)) => mb,
        _ => u.mailbox("INBOX").map_err(|e| temp("cannot open INBOX", &format_args!("{e:?}")))?,
    };
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    // Room in the user's quota until the copy is staged (it counts then).
    let _claim = u.claim(1, len).map_err(store_err)?;
    {
        let mut m = mb.borrow_mut();
        let mut h = m.begin_append(len).map_err(store_err)?;
        for p in parts {
            m.append_chunk(&mut h, p).map_err(store_err)?;
        }
        m.finish_append(h, 0, 0, now).map_err(store_err)?;
    }
    Ok(mb)
}

/// A message as IMAP serves it: unchanged if it has any CR, else with every
/// LF made CRLF (pipes from MTAs, Maildir and mbox files have LF line ends).
pub fn crlf_if_lf_only(raw: Vec<u8>) -> Vec<u8> {
    if memchr::memchr(b'\r', &raw).is_some() {
        return raw;
    }
    let lfs = memchr::memchr_iter(b'\n', &raw).count();
    if lfs == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + lfs);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', &raw) {
        out.extend_from_slice(&raw[start..i]);
        out.extend_from_slice(b"\r\n");
        start = i + 1;
    }
    out.extend_from_slice(&raw[start..]);
    out
}

/// Users' quota limits: their passwd-file line's rules, the rest from
/// `[quota]` (for [`Store::set_quota_source`]).
pub fn quota_source(users: Arc<UserDb>, config: &QuotaConfig) -> QuotaSource {
    let default = config.limits();
    Rc::new(move |name: &str| users.quota(name, default))
}

/// The system's host name, for greetings and trace headers.
pub fn system_hostname() -> String {
    match rustix::system::uname().nodename().to_str() {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}

/// An RFC 5322 date-time (section 3.3) for trace headers, in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = crate::proto::civil_from_days(days);
    let wd = DAYS[days.rem_euclid(7) as usize];
    format!("{wd}, {d} {} {y} {:02}:{:02}:{:02} +0000", MONTHS[m as usize - 1], secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_dates_follow_rfc5322_3_3() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_737_600 + 6 * 3600 + 61), "Fri, 27 Nov 2026 06:01:01 +0000");
    }
}
