//! STORE and UID STORE (RFC 9051 6.4.6), with UNCHANGEDSINCE (RFC 7162
//! 3.1.3). Runs in slices: a batch of messages is changed with one log
//! write, its FETCH responses follow, and the tagged OK comes once every
//! change is durable.

use crate::proto::seqset::compact;
use crate::proto::{Flag, Out, SequenceSet, StoreOp};
use crate::session::flags::{flags_item, keyword_mask, split_flags};
use crate::session::reply::{bad, enable_condstore, no, ok, ok_when_durable, store_error};
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};
use crate::session::walk::SetWalk;
use crate::store::format::FlagChange;

/// Messages changed per log write.
const BATCH: usize = 4096;

#[allow(clippy::too_many_arguments)]
pub fn run(
    mut m: InMailbox<'_>,
    tag: &str,
    set: &SequenceSet,
    op: StoreOp,
    silent: bool,
    flags: &[Flag],
    uid: bool,
    unchanged_since: Option<u64>,
    out: &mut Out,
) -> Directive {
    if unchanged_since.is_some() {
        enable_condstore(&mut m, out);
    }
    let sel = m.sel;
    if sel.read_only {
        return no(out, tag, Some("CANNOT"), "Mailbox is read-only");
    }
    let (bits, kws) = match split_flags(flags) {
        Ok(x) => x,
        Err(f) => return bad(out, tag, &format!("Invalid system flag {f}")),
    };
    let mask = match keyword_mask(&sel.mbox, &kws) {
        Ok(m) => m,
        Err(e) => return store_error(out, tag, &e),
    };
    sel.announce_flags(out, false);
    let c = Store {
        tag: tag.to_string(),
        walk: SetWalk::new(set, uid),
        change: match op {
            StoreOp::Replace => FlagChange::replace(bits, mask),
            StoreOp::Add => FlagChange::add(bits, mask),
            StoreOp::Remove => FlagChange::remove(bits, mask),
        },
        silent,
        uid,
        unchanged_since,
        modified: Vec::new(),
        expunged: false,
        changed: false,
        at: 0,
    };
    run_in_mailbox(c)
}

/// A STORE in progress.
struct Store {
    tag: String,
    walk: SetWalk,
    change: FlagChange,
    silent: bool,
    uid: bool,
    unchanged_since: Option<u64>,
    /// UNCHANGEDSINCE failures (RFC 7162 3.1.3): sequence numbers or UIDs.
    modified: Vec<u32>,
    expunged: bool,
    changed: bool,
    /// Where in the mailbox's messages the last one stored was (see
    /// `Mailbox::find_from`).
    at: usize,
}

impl MailboxCursor for Store {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        if let Err(p) = self.walk.ready(&mut m, out, &self.tag) {
            return p;
        }
        let (rev2, qresync) = (m.cx.enabled.rev2, m.cx.enabled.qresync);
        let sel = &mut *m.sel;
        sel.condstore |= m.cx.enabled.condstore;
        loop {
            // The next batch: what changes, with one log write. Only a
            // conditional STORE looks at the messages first.
            let mut uids = Vec::with_capacity(BATCH);
            let mut seqs = Vec::new();
            {
                let mb = sel.mbox.borrow();
                while uids.len() < BATCH {
                    let Some((seq, u)) = self.walk.next() else { break };
                    if let Some(since) = self.unchanged_since {
                        let Some(m) = mb.find_from(u, &mut self.at) else {
                            self.expunged = true;
                            continue;
                        };
                        if m.modseq > since {
                            self.modified.push(if self.uid { u } else { seq });
                            continue;
                        }
                    }
                    uids.push(u);
                    if !self.silent {
                        seqs.push(seq);
                    }
                }
            }
            if uids.is_empty() {
                break;
            }
            let done = match sel.mbox.borrow_mut().change_flags(&uids, self.change) {
                Ok(d) => d,
                Err(e) => return Progress::Done(store_error(out, &self.tag, &e)),
            };
            self.expunged |= done.missing > 0;
            if !done.changed.is_empty() {
                self.changed = true;
                sel.reported(done.modseq);
            }
            // Each message's flags and modseq as they are now, changed or not.
            let mb = sel.mbox.borrow();
            for (&seq, &u) in seqs.iter().zip(&uids) {
                let Some(m) = mb.find_from(u, &mut self.at) else { continue };
                out.raw(b"* ").num(u64::from(seq)).raw(b" FETCH (");
                flags_item(out, m, mb.keywords(), !rev2 && sel.is_recent(u));
                // RFC 7162 3.2.4: with QRESYNC every FETCH response has the UID.
                if self.uid || qresync {
                    out.raw(b" UID ").num(u64::from(u));
                }
                if sel.condstore {
                    out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
                }
                out.raw(b")\r\n");
            }
            if out.len() >= OUTPUT_BUDGET {
                return Progress::More;
            }
        }
        let (code, text) = if !self.modified.is_empty() {
            (Some(format!("MODIFIED {}", compact(&self.modified))), "Conditional STORE failed")
        } else {
            // Messages another session expunged are skipped; the command succeeds
            // for the rest and says why some are missing (RFC 9051 7.1, as RFC 2180
            // 4.1 allows; Dovecot answers the same way).
            (self.expunged.then(|| "EXPUNGEISSUED".to_string()), "Store completed.")
        };
        if self.changed {
            return Progress::Done(ok_when_durable(m.user.durable(&sel.mbox), &self.tag, code, text));
        }
        Progress::Done(ok(&self.tag, code.as_deref(), text))
    }
}
