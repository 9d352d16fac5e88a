//! RENAME (RFC 9051 6.3.6): children move along; renaming INBOX moves its
//! messages into the new mailbox and leaves INBOX empty.

use crate::proto::{Mailbox, Out};
use crate::session::reply::{mailbox_error, no, ok_when_durable};
use crate::session::state::{Authed, Directive};
use crate::store::MailboxError;

pub fn run(a: Authed<'_>, tag: &str, from: &Mailbox, to: &Mailbox, now: i64, out: &mut Out) -> Directive {
    let (from, to) = match (a.cx.mailbox_name(from), a.cx.mailbox_name(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return no(out, tag, Some("CANNOT"), e),
    };
    match a.user.store.rename(&from, &to, now) {
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, None, "Rename completed."),
        Err(MailboxError::NonExistent) => no(out, tag, Some("NONEXISTENT"), &format!("Mailbox doesn't exist: {from}")),
        Err(MailboxError::AlreadyExists) => no(out, tag, Some("ALREADYEXISTS"), "Target mailbox already exists"),
        Err(e) => mailbox_error(out, tag, e),
    }
}
