//! COPY / UID COPY (RFC 9051 6.4.7) and MOVE / UID MOVE (RFC 6851), with
//! COPYUID (RFC 4315). The answer waits until the copies are durable; MOVE
//! expunges the originals only after that.

use super::{
    bad, keyword_mask, mailbox_durable, no, not_durable, ok, ok_when_durable, open_mailbox, store_error, uid_set, when_durable, Directive, Session, State,
};
use crate::proto::{Mailbox, Out, SequenceSet};

pub fn run(s: &mut Session, tag: String, set: &SequenceSet, mailbox: &Mailbox, uid: bool, moved: bool, out: &mut Out) -> Directive {
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, &tag, Some("CANNOT"), e),
    };
    let target = match open_mailbox(s, &name) {
        Ok(m) => m,
        Err((Some("NONEXISTENT"), text)) => return no(out, &tag, Some("TRYCREATE"), &text),
        Err((code, text)) => return no(out, &tag, code, &text),
    };
    // RFC 9051 7.5.1: UID commands may carry EXPUNGE responses, so the
    // session catches up first and UIDs resolve against the mailbox as it is.
    if uid && !super::sync(s, out, true) {
        return Directive::Return(super::Step::Close);
    }
    let State::Selected(_, sel) = &s.state else { unreachable!("state checked by dispatch") };
    if moved && sel.read_only {
        return no(out, &tag, Some("CANNOT"), "Mailbox is read-only");
    }
    let Some(list) = sel.resolve(set, uid) else { return bad(out, &tag, "Invalid messageset") };
    // Gather the originals first: the target may be the same mailbox.
    let mut items = Vec::with_capacity(list.len());
    {
        let src = sel.mbox.borrow();
        for &(_, u) in &list {
            let Some(m) = src.find(u) else {
                return no(out, &tag, Some("EXPUNGEISSUED"), "Some of the requested messages no longer exist.");
            };
            let kws: Vec<String> = src.keywords().iter().enumerate().filter(|(i, _)| m.keywords & (1 << i) != 0).map(|(_, k)| k.clone()).collect();
            let bytes = match src.message(m) {
                Ok(b) => b,
                Err(e) => return store_error(out, &tag, &e.into()),
            };
            items.push((u, bytes, m.flags, kws, src.location(m).internal_date));
        }
    }
    if items.is_empty() {
        // Nothing matched (UID sets may name no message): nothing to do.
        return super::ok(s, out, &tag, None, if moved { "No messages moved." } else { "No messages copied." }, true);
    }
    let mut src_uids = Vec::with_capacity(items.len());
    let mut dst_uids = Vec::with_capacity(items.len());
    for (u, bytes, flags, kws, date) in items {
        let mask = match keyword_mask(&target, &kws) {
            Ok(m) => m,
            Err(e) => return store_error(out, &tag, &e),
        };
        let r = target.borrow_mut().append_bytes(bytes.bytes(), flags, mask, date);
        match r {
            Ok(n) => {
                src_uids.push(u);
                dst_uids.push(n);
            }
            Err(e) => return store_error(out, &tag, &e),
        }
    }
    let ticket = mailbox_durable(s, &target);
    when_durable(
        s,
        ticket,
        Box::new(move |s, r, out| {
            if let Err(e) = r {
                return not_durable(out, &tag, &e);
            }
            let code = format!("COPYUID {} {} {}", target.borrow().uidvalidity(), uid_set(&src_uids), uid_set(&dst_uids));
            if !moved {
                return ok(s, out, &tag, Some(&code), "Copy completed.", true);
            }
            // RFC 6851 3.3: COPYUID in an untagged OK, then the EXPUNGEs;
            // the originals go only once the copies are durable.
            out.untagged_status("OK", Some(&code), "Moved UIDs.");
            let State::Selected(_, sel) = &s.state else { return ok(s, out, &tag, None, "Move completed.", true) };
            let source = sel.mbox.clone();
            let r = source.borrow_mut().expunge(&src_uids);
            match r {
                Ok(gone) if gone.is_empty() => ok(s, out, &tag, None, "Move completed.", true),
                Ok(_) => {
                    let ticket = mailbox_durable(s, &source);
                    ok_when_durable(s, ticket, &tag, None, "Move completed.", true)
                }
                Err(e) => store_error(out, &tag, &e),
            }
        }),
    )
}
