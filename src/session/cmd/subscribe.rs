//! SUBSCRIBE and UNSUBSCRIBE (RFC 9051 6.3.7, 6.3.8).

use super::create::mailbox_error;
use super::{no, Directive, Session};
use crate::proto::{Mailbox, Out};

pub fn run(s: &mut Session, tag: &str, mailbox: &Mailbox, subscribe: bool, out: &mut Out) -> Directive {
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let store = s.state.authed().expect("authenticated").store().clone();
    let r = if subscribe {
        let canonical = crate::store::manifest::canonical(&name).unwrap_or_default();
        if !store.entries().iter().any(|e| e.name == canonical) {
            return no(out, tag, Some("NONEXISTENT"), &format!("Mailbox doesn't exist: {name}"));
        }
        store.subscribe(&name)
    } else {
        match store.unsubscribe(&name) {
            // Unsubscribing a name that is not subscribed changes nothing: fine.
            Err(crate::store::MailboxError::NonExistent) => Ok(()),
            r => r,
        }
    };
    match r {
        Ok(()) => {
            let ticket = super::manifest_durable(s);
            super::ok_when_durable(s, ticket, tag, None, if subscribe { "Subscribe completed." } else { "Unsubscribe completed." }, true)
        }
        Err(e) => mailbox_error(out, tag, e),
    }
}
