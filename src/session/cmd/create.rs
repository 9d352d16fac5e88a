//! CREATE (RFC 9051 6.3.4): missing parent levels are created too.

use crate::proto::{Mailbox, Out};
use crate::session::reply::{mailbox_error, no, ok_when_durable};
use crate::session::state::{Authed, Directive};
use crate::store::MailboxError;

pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, now: i64, out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    match a.user.store.create(&name, now) {
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, None, "Create completed."),
        Err(MailboxError::AlreadyExists) => no(out, tag, Some("ALREADYEXISTS"), "Mailbox already exists"),
        Err(MailboxError::InvalidName(_)) => no(out, tag, Some("CANNOT"), "Invalid mailbox name"),
        Err(e) => mailbox_error(out, tag, e),
    }
}
