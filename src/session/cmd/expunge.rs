//! EXPUNGE (RFC 9051 6.4.3) and UID EXPUNGE (RFC 4315 2.1). The untagged
//! EXPUNGE responses come from the session's sync, highest number first.

use super::{mailbox_durable, no, ok, ok_when_durable, store_error, Directive, Session, State};
use crate::proto::{Out, SequenceSet};
use crate::store::format::F_DELETED;

pub fn run(s: &mut Session, tag: &str, uids: Option<&SequenceSet>, out: &mut Out) -> Directive {
    let State::Selected(_, sel) = &mut s.state else { unreachable!("state checked by dispatch") };
    if sel.read_only {
        return no(out, tag, Some("CANNOT"), "Mailbox is read-only");
    }
    let allowed: Option<Vec<u32>> = match uids {
        Some(set) => match sel.resolve(set, true) {
            Some(v) => Some(v.into_iter().map(|(_, u)| u).collect()),
            None => return super::bad(out, tag, "Invalid UID set"),
        },
        None => None,
    };
    let doomed: Vec<u32> = sel
        .mbox
        .borrow()
        .msgs()
        .iter()
        .filter(|m| m.flags & F_DELETED != 0 && allowed.as_ref().is_none_or(|a| a.binary_search(&m.uid).is_ok()))
        .map(|m| m.uid)
        .collect();
    let r = sel.mbox.borrow_mut().expunge(&doomed);
    match r {
        Err(e) => store_error(out, tag, &e),
        Ok(gone) if gone.is_empty() => ok(s, out, tag, None, "Expunge completed.", true),
        Ok(_) => {
            let mb = sel.mbox.clone();
            let ticket = mailbox_durable(s, &mb);
            ok_when_durable(s, ticket, tag, None, "Expunge completed.", true)
        }
    }
}
