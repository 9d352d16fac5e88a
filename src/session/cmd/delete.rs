//! DELETE (RFC 9051 6.3.5). A mailbox with children becomes a \Noselect
//! placeholder; INBOX cannot be deleted.

use crate::proto::{Mailbox, Out};
use crate::session::reply::{mailbox_error, no, ok_when_durable};
use crate::session::state::{Authed, Directive, Session, State};

/// Deleting our own selected mailbox: leave it first (RFC 9051 7.1: `OK
/// [CLOSED]`).
pub fn leave_if_selected(s: &mut Session, mailbox: &Mailbox, out: &mut Out) {
    let Ok(name) = s.cx.mailbox_name(mailbox) else { return };
    let canonical = crate::store::manifest::canonical(&name).unwrap_or(name);
    if matches!(&s.state, State::Selected(_, sel) if sel.name == canonical && canonical != "INBOX") {
        s.deselect();
        out.untagged_status("OK", Some("CLOSED"), "Selected mailbox deleted.");
    }
}

pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    match a.user.store.delete(&name) {
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, None, "Delete completed."),
        Err(crate::store::MailboxError::NonExistent) => no(out, tag, Some("NONEXISTENT"), &format!("Mailbox doesn't exist: {name}")),
        Err(e) => mailbox_error(out, tag, e),
    }
}
