//! CREATE (RFC 9051 6.3.4): missing parent levels are created too.

use super::{no, Directive, Session};
use crate::proto::{Mailbox, Out};
use crate::store::MailboxError;

pub fn run(s: &mut Session, tag: &str, mailbox: &Mailbox, now: i64, out: &mut Out) -> Directive {
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let r = s.state.authed().expect("authenticated").store().create(&name, now);
    match r {
        Ok(()) => {
            let ticket = super::manifest_durable(s);
            super::ok_when_durable(s, ticket, tag, None, "Create completed.", true)
        }
        Err(MailboxError::AlreadyExists) => no(out, tag, Some("ALREADYEXISTS"), "Mailbox already exists"),
        Err(MailboxError::InvalidName(_)) => no(out, tag, Some("CANNOT"), "Invalid mailbox name"),
        Err(e) => mailbox_error(out, tag, e),
    }
}

/// Answers the mailbox errors every mailbox command can meet.
pub(crate) fn mailbox_error(out: &mut Out, tag: &str, e: MailboxError) -> Directive {
    match e {
        MailboxError::NonExistent => no(out, tag, Some("NONEXISTENT"), "Mailbox doesn't exist"),
        MailboxError::NoSelect => no(out, tag, Some("NONEXISTENT"), "Mailbox is not selectable"),
        MailboxError::AlreadyExists => no(out, tag, Some("ALREADYEXISTS"), "Mailbox already exists"),
        MailboxError::HasChildren => no(out, tag, Some("HASCHILDREN"), "Mailbox has children, delete them first"),
        MailboxError::InvalidName(_) => no(out, tag, Some("CANNOT"), "Invalid mailbox name"),
        MailboxError::Forbidden(why) => no(out, tag, Some("CANNOT"), why),
        MailboxError::Io(err) => {
            tracing::error!(error = %err, "mailbox operation failed");
            no(out, tag, Some("SERVERBUG"), "Internal storage error")
        }
    }
}
