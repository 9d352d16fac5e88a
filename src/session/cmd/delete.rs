//! DELETE (RFC 9051 6.3.5). A mailbox with children becomes a \Noselect
//! placeholder; INBOX cannot be deleted.

use super::create::mailbox_error;
use super::{no, Directive, Session, State};
use crate::proto::{Mailbox, Out};

pub fn run(s: &mut Session, tag: &str, mailbox: &Mailbox, out: &mut Out) -> Directive {
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let canonical = crate::store::manifest::canonical(&name).unwrap_or_else(|_| name.clone());
    // Deleting our own selected mailbox: leave it first.
    if let State::Selected(_, sel) = &s.state {
        if sel.name == canonical && canonical != "INBOX" {
            let State::Selected(a, sel) = std::mem::replace(&mut s.state, State::Logout) else { unreachable!() };
            sel.close();
            s.state = State::Authenticated(a);
            out.untagged_status("OK", Some("CLOSED"), "Selected mailbox deleted.");
        }
    }
    let r = s.state.authed().expect("authenticated").store().delete(&name);
    match r {
        Ok(()) => {
            let ticket = super::manifest_durable(s);
            super::ok_when_durable(s, ticket, tag, None, "Delete completed.", true)
        }
        Err(crate::store::MailboxError::NonExistent) => no(out, tag, Some("NONEXISTENT"), &format!("Mailbox doesn't exist: {name}")),
        Err(e) => mailbox_error(out, tag, e),
    }
}
