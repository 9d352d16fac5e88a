//! RENAME (RFC 9051 6.3.6): children move along; renaming INBOX moves its
//! messages into the new mailbox and leaves INBOX empty.

use super::create::mailbox_error;
use super::{no, Directive, Session};
use crate::proto::{Mailbox, Out};
use crate::store::MailboxError;

pub fn run(s: &mut Session, tag: &str, from: &Mailbox, to: &Mailbox, now: i64, out: &mut Out) -> Directive {
    let (from, to) = match (s.mailbox_name(from), s.mailbox_name(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return no(out, tag, Some("CANNOT"), e),
    };
    let r = s.state.authed().expect("authenticated").store().rename(&from, &to, now);
    match r {
        Ok(()) => {
            let ticket = super::manifest_durable(s);
            super::ok_when_durable(s, ticket, tag, None, "Rename completed.", true)
        }
        Err(MailboxError::NonExistent) => no(out, tag, Some("NONEXISTENT"), &format!("Mailbox doesn't exist: {from}")),
        Err(MailboxError::AlreadyExists) => no(out, tag, Some("ALREADYEXISTS"), "Target mailbox already exists"),
        Err(e) => mailbox_error(out, tag, e),
    }
}
