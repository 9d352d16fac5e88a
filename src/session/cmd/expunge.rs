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
    // UID EXPUNGE: only the \Deleted messages among these UIDs (RFC 4315 2.1).
    let allowed = match uids {
        Some(crate::proto::SequenceSet::Ranges(r)) => Some(r.clone()),
        Some(crate::proto::SequenceSet::Saved) => return super::bad(out, tag, "$ is not a UID set here"),
        None => None,
    };
    let max_uid = sel.uids().last().copied().unwrap_or(0);
    let doomed: Vec<u32> = sel
        .mbox
        .borrow()
        .msgs()
        .iter()
        .filter(|m| m.flags & F_DELETED != 0 && allowed.as_ref().is_none_or(|a| a.contains(m.uid, max_uid)))
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
