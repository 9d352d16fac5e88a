//! CREATE (RFC 9051 6.3.4): missing parent levels are created too. With
//! `(USE (\Drafts))` the new mailbox gets that special use (RFC 6154 3,
//! CREATE-SPECIAL-USE).

use crate::proto::{Mailbox, Out};
use crate::session::reply::{mailbox_error, no, ok_when_durable};
use crate::session::state::{Authed, Directive};
use crate::store::MailboxError;

/// The special uses a mailbox can be created with, as LIST shows them.
/// `\All` and `\Flagged` name virtual mailboxes (every message, every
/// flagged message), which ringmail does not keep.
const CREATABLE: &[&str] = &["\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"];

/// The special use `name` (any case) names, as LIST spells it, if a
/// mailbox can have it.
pub(super) fn special_use_named(name: &str) -> Option<&'static str> {
    CREATABLE.iter().find(|u| u.eq_ignore_ascii_case(name)).copied()
}

pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, uses: &[String], now: i64, out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let special_use = match uses {
        [] => None,
        [one] => match special_use_named(one) {
            Some(u) => Some(u),
            // RFC 6154 3: USEATTR for an attribute the server cannot give.
            None => return no(out, tag, Some("USEATTR"), "Unsupported special-use attribute"),
        },
        _ => return no(out, tag, Some("USEATTR"), "A mailbox has at most one special use here"),
    };
    match a.user.store.create(&name, special_use, now) {
        // RFC 8474 4.1: the new mailbox's MAILBOXID.
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, a.user.store.mailbox_id(&name).map(|id| format!("MAILBOXID ({id})")), "Create completed."),
        Err(MailboxError::AlreadyExists) => no(out, tag, Some("ALREADYEXISTS"), "Mailbox already exists"),
        Err(MailboxError::InvalidName(_)) => no(out, tag, Some("CANNOT"), "Invalid mailbox name"),
        Err(e) => mailbox_error(out, tag, e),
    }
}
