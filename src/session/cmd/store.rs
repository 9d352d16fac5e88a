//! STORE and UID STORE (RFC 9051 6.4.6), with UNCHANGEDSINCE (RFC 7162 3.1.3).

use super::{bad, keyword_mask, mailbox_durable, no, ok, ok_when_durable, split_flags, store_error, uid_set, Directive, Session, State};
use crate::proto::{Flag, Out, SequenceSet, StoreOp};
use crate::session::mailbox::flags_item;

#[allow(clippy::too_many_arguments)]
pub fn run(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    op: StoreOp,
    silent: bool,
    flags: &[Flag],
    uid: bool,
    unchanged_since: Option<u64>,
    out: &mut Out,
) -> Directive {
    let rev2 = s.enabled.rev2;
    if unchanged_since.is_some() {
        s.enabled.condstore = true;
    }
    // RFC 9051 7.5.1: UID commands may carry EXPUNGE responses, so the
    // session catches up first and UIDs resolve against the mailbox as it is.
    if uid && !super::sync(s, out, true) {
        return Directive::Return(super::Step::Close);
    }
    let condstore = s.enabled.condstore;
    let State::Selected(_, sel) = &mut s.state else { unreachable!("state checked by dispatch") };
    sel.condstore |= condstore;
    if sel.read_only {
        return no(out, tag, Some("CANNOT"), "Mailbox is read-only");
    }
    let (bits, kws) = match split_flags(flags) {
        Ok(x) => x,
        Err(f) => return bad(out, tag, &format!("Invalid system flag {f}")),
    };
    let Some(list) = sel.resolve(set, uid) else { return bad(out, tag, "Invalid messageset") };
    let mask = match keyword_mask(&sel.mbox, &kws) {
        Ok(m) => m,
        Err(e) => return store_error(out, tag, &e),
    };
    let mut modified = Vec::new();
    let mut expunged = false;
    let mut changed = false;
    for (seq, u) in list {
        let Some(m) = sel.mbox.borrow().find(u).copied() else {
            expunged = true;
            continue;
        };
        if unchanged_since.is_some_and(|us| m.modseq > us) {
            modified.push(if uid { u } else { seq });
            continue;
        }
        let (nf, nk) = match op {
            StoreOp::Replace => (bits, mask),
            StoreOp::Add => (m.flags | bits, m.keywords | mask),
            StoreOp::Remove => (m.flags & !bits, m.keywords & !mask),
        };
        let r = sel.mbox.borrow_mut().set_flags(u, nf, nk);
        let modseq = match r {
            Ok(Some(ms)) => {
                sel.reported(u, ms);
                changed = true;
                ms
            }
            Ok(None) => m.modseq,
            Err(e) => return store_error(out, tag, &e),
        };
        if !silent {
            let mb = sel.mbox.borrow();
            let now = m.with_flags(nf, nk, modseq);
            out.raw(b"* ").num(u64::from(seq)).raw(b" FETCH (");
            flags_item(out, &now, mb.keywords(), !rev2 && sel.is_recent(u));
            if uid {
                out.raw(b" UID ").num(u64::from(u));
            }
            if sel.condstore {
                out.raw(b" MODSEQ (").num(modseq).raw(b")");
            }
            out.raw(b")\r\n");
        }
    }
    let (code, text) = if !modified.is_empty() {
        (Some(format!("MODIFIED {}", uid_set(&modified))), "Conditional STORE failed")
    } else {
        // Messages another session expunged are skipped; the command succeeds
        // for the rest and says why some are missing (RFC 9051 7.1, as RFC 2180
        // 4.1 allows; Dovecot answers the same way).
        (expunged.then(|| "EXPUNGEISSUED".to_string()), "Store completed.")
    };
    if changed {
        let mb = sel.mbox.clone();
        let ticket = mailbox_durable(s, &mb);
        return ok_when_durable(s, ticket, tag, code, text, uid);
    }
    ok(s, out, tag, code.as_deref(), text, uid)
}
