//! SUBSCRIBE and UNSUBSCRIBE (RFC 9051 6.3.7, 6.3.8).

use crate::proto::{Mailbox, Out};
use crate::session::reply::{mailbox_error, no, ok_when_durable};
use crate::session::state::{Authed, Directive};

pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, subscribe: bool, out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let store = &a.user.store;
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
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, None, if subscribe { "Subscribe completed." } else { "Unsubscribe completed." }),
        Err(e) => mailbox_error(out, tag, e),
    }
}
