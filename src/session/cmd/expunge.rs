//! EXPUNGE (RFC 9051 6.4.3) and UID EXPUNGE (RFC 4315 2.1). The untagged
//! EXPUNGE responses come from the session's sync, highest number first.

use crate::proto::{Out, SequenceSet};
use crate::session::reply::{bad, no, ok, ok_when_durable, store_error};
use crate::session::state::{Directive, InMailbox};
use crate::store::format::F_DELETED;

pub fn run(m: InMailbox<'_>, tag: &str, uids: Option<&SequenceSet>, out: &mut Out) -> Directive {
    let sel = m.sel;
    if sel.read_only {
        return no(out, tag, Some("CANNOT"), "Mailbox is read-only");
    }
    // UID EXPUNGE: only the \Deleted messages among these UIDs (RFC 4315 2.1).
    let allowed = match uids {
        Some(SequenceSet::Ranges(r)) => Some(r.clone()),
        Some(SequenceSet::Saved) => return bad(out, tag, "$ is not a UID set here"),
        None => None,
    };
    let max_uid = sel.uids().last().unwrap_or(0);
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
        Ok(gone) if gone.is_empty() => ok(tag, None, "Expunge completed."),
        Ok(_) => ok_when_durable(m.user.durable(&sel.mbox), tag, None, "Expunge completed."),
    }
}
