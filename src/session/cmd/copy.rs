//! COPY / UID COPY (RFC 9051 6.4.7) and MOVE / UID MOVE (RFC 6851), with
//! COPYUID (RFC 4315). Copies are made in slices (a bounded number of
//! bytes each, so a large COPY never holds the worker); the answer waits
//! until they are durable, and MOVE expunges the originals only after that.

use std::rc::Rc;

use crate::proto::seqset::compact;
use crate::proto::{Mailbox, Out, SequenceSet};
use crate::session::flags::keyword_mask;
use crate::session::reply::{no, not_durable, ok, ok_when_durable, store_error, when_durable};
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress};
use crate::session::walk::SetWalk;
use crate::store::{Claim, Copied, MailboxRef, UserStore};

/// Bytes and messages copied per slice.
const BYTES_PER_SLICE: u64 = 16 << 20;
const MESSAGES_PER_SLICE: usize = 1024;

pub fn run(m: InMailbox<'_>, tag: String, set: &SequenceSet, mailbox: &Mailbox, uid: bool, moved: bool, out: &mut Out) -> Directive {
    let name = match m.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, &tag, Some("CANNOT"), e),
    };
    let target = match m.user.open_mailbox(&name) {
        Ok(m) => m,
        Err((Some("NONEXISTENT"), text)) => return no(out, &tag, Some("TRYCREATE"), &text),
        Err((code, text)) => return no(out, &tag, code, &text),
    };
    if moved && m.sel.read_only {
        return no(out, &tag, Some("CANNOT"), "Mailbox is read-only");
    }
    let store = m.user.store.clone();
    run_in_mailbox(Copy { tag, walk: SetWalk::new(set, uid), target, store, moved, src: Vec::new(), dst: Vec::new(), claim: Claim::nothing() })
}

struct Copy {
    tag: String,
    walk: SetWalk,
    target: MailboxRef,
    /// The user's store, for the durability of both mailboxes.
    store: Rc<UserStore>,
    moved: bool,
    /// UIDs copied so far, and their copies' UIDs.
    src: Vec<u32>,
    dst: Vec<u32>,
    /// Room in the user's quota for copies not yet written.
    claim: Claim,
}

impl MailboxCursor for Copy {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        match self.walk.ready(&mut m, out, &self.tag) {
            Err(p) => return p,
            Ok(None) => {}
            Ok(Some(list)) => {
                // All or nothing: every original must still be there.
                let src = m.sel.mbox.borrow();
                if list.clone().any(|(_, u)| src.find(u).is_none()) {
                    return Progress::Done(no(out, &self.tag, Some("EXPUNGEISSUED"), "Some of the requested messages no longer exist."));
                }
                if list.remaining() == 0 {
                    // Nothing matched (UID sets may name no message): nothing to do.
                    let text = if self.moved { "No messages moved." } else { "No messages copied." };
                    return Progress::Done(ok(&self.tag, None, text));
                }
                // The copies' room in the user's quota, all of it before the
                // first is written (RFC 9208 4.3.1). A MOVE stays within the
                // user's one quota root: it adds nothing.
                if !self.moved {
                    let bytes = list.clone().filter_map(|(_, u)| src.find(u).map(|m| src.location(m).length)).sum();
                    match self.store.claim(list.remaining() as u64, bytes) {
                        Ok(c) => self.claim = c,
                        Err(e) => return Progress::Done(store_error(out, &self.tag, &e)),
                    }
                }
            }
        }
        let sel = m.sel;
        // A slice of copies, stored with one log write.
        let mut bytes = 0u64;
        let mut copies = Vec::new();
        let mut originals = Vec::new();
        while bytes < BYTES_PER_SLICE && copies.len() < MESSAGES_PER_SLICE {
            let Some((_, u)) = self.walk.next() else { break };
            // The original, read before the target is borrowed: they may be
            // the same mailbox. Its bytes and cache are shared, not copied.
            let (copy, kws) = {
                let src = sel.mbox.borrow();
                let Some(m) = src.find(u).copied() else { continue };
                let kws: Vec<String> = if m.keywords == 0 { Vec::new() } else { crate::store::keyword_names(src.keywords(), m.keywords) };
                let read = src.message(&m).and_then(|message| Ok((message, src.cache_unread(&m)?)));
                match read {
                    Ok((message, cache)) => (Copied { message, cache, flags: m.flags, keywords: 0, internal_date: src.location(&m).internal_date }, kws),
                    Err(e) => return Progress::Done(store_error(out, &self.tag, &e.into())),
                }
            };
            let keywords = match keyword_mask(&self.target, &kws) {
                Ok(m) => m,
                Err(e) => return Progress::Done(store_error(out, &self.tag, &e)),
            };
            bytes += copy.message.len() as u64;
            copies.push(Copied { keywords, ..copy });
            originals.push(u);
        }
        if copies.is_empty() {
            return Progress::Done(self.finish(sel.mbox.clone()));
        }
        let r = self.target.borrow_mut().append_copies(&copies);
        match r {
            Ok(uids) => {
                self.src.extend(originals);
                self.dst.extend(uids);
            }
            Err(e) => return Progress::Done(store_error(out, &self.tag, &e)),
        }
        Progress::More
    }
}

impl Copy {
    /// Every copy is written: answer once they are durable; MOVE then
    /// expunges the originals (from `source`) and answers once that is
    /// durable too.
    fn finish(&mut self, source: MailboxRef) -> Directive {
        // Written: the copies count in the target's totals now.
        self.claim = Claim::nothing();
        let ticket = self.store.durable(&self.target);
        let (tag, target, moved, store) = (self.tag.clone(), self.target.clone(), self.moved, self.store.clone());
        let (src, dst) = (std::mem::take(&mut self.src), std::mem::take(&mut self.dst));
        when_durable(
            ticket,
            Box::new(move |r, out| {
                if let Err(e) = r {
                    return not_durable(out, &tag, &e);
                }
                let code = format!("COPYUID {} {} {}", target.borrow().uidvalidity(), compact(&src), compact(&dst));
                if !moved {
                    return ok(&tag, Some(&code), "Copy completed.");
                }
                // RFC 6851 3.3: COPYUID in an untagged OK, then the EXPUNGEs.
                out.untagged_status("OK", Some(&code), "Moved UIDs.");
                let r = source.borrow_mut().expunge(&src);
                match r {
                    Ok(gone) if gone.is_empty() => ok(&tag, None, "Move completed."),
                    Ok(_) => ok_when_durable(store.durable(&source), &tag, None, "Move completed."),
                    Err(e) => store_error(out, &tag, &e),
                }
            }),
        )
    }
}
