//! SELECT and EXAMINE (RFC 9051 6.3.2, 6.3.3), with the CONDSTORE and
//! QRESYNC select parameters (RFC 7162 3.1.8, 3.2.5).

use super::fetch;
use crate::proto::{Mailbox, Out, Ranges, SelectParams, SeqNum, SeqRange};
use crate::session::reply::no;
use crate::session::selected::Selected;
use crate::session::state::{Authed, Directive};

/// Opens the mailbox and answers; the caller enters the Selected state
/// with what this returns. (The previous mailbox, if any, was left first:
/// selecting closes it whatever happens next.)
pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, read_only: bool, params: &SelectParams, out: &mut Out) -> (Directive, Option<Box<Selected>>) {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return (no(out, tag, Some("CANNOT"), e), None),
    };
    let mbox = match a.user.open_mailbox(&name) {
        Ok(m) => m,
        Err((code, text)) => return (no(out, tag, code, &text), None),
    };
    let cx = a.cx;
    if params.condstore {
        cx.enabled.condstore = true;
    }
    let canonical = crate::store::manifest::canonical(&name).unwrap_or(name);
    let mut sel = Selected::open(mbox, canonical, read_only, cx.signal.clone(), cx.enabled.condstore);
    let rev2 = cx.enabled.rev2;
    sel.announce_flags(out, true);
    {
        let mb = sel.mbox.borrow();
        out.raw(b"* ").num(u64::from(sel.exists())).raw(b" EXISTS\r\n");
        if !rev2 {
            out.raw(b"* ").num(u64::from(sel.recent_count())).raw(b" RECENT\r\n");
            if let Some(i) = mb.msgs().iter().position(|m| m.flags & crate::store::format::F_SEEN == 0) {
                out.untagged_status("OK", Some(&format!("UNSEEN {}", i + 1)), "First unseen.");
            }
        }
        out.untagged_status("OK", Some(&format!("UIDVALIDITY {}", mb.uidvalidity())), "UIDs valid");
        out.untagged_status("OK", Some(&format!("UIDNEXT {}", mb.uidnext())), "Predicted next UID");
        if cx.enabled.condstore {
            out.untagged_status("OK", Some(&format!("HIGHESTMODSEQ {}", mb.highest_modseq())), "Highest");
        }
        if let Some(id) = a.user.store.mailbox_id(&sel.name) {
            out.untagged_status("OK", Some(&format!("MAILBOXID ({id})")), "Ok");
        }
        if rev2 {
            out.raw(b"* LIST () \"/\" ").mailbox(&sel.name, true).crlf();
        }
    }
    let (code, text) = if read_only { ("READ-ONLY", "Examine completed.") } else { ("READ-WRITE", "Select completed.") };
    // RFC 7162 3.2.5.1: a client that knew this mailbox (same UIDVALIDITY)
    // hears what changed since its modseq, among the UIDs it knew.
    if let Some(q) = params.qresync.as_ref().filter(|q| q.uidvalidity == sel.mbox.borrow().uidvalidity()) {
        let known = match &q.known_uids {
            Some(r) => r.clone(),
            None => match sel.mbox.borrow().uidnext() {
                1 => Ranges::default(),
                next => Ranges::from_ranges(&[SeqRange { start: SeqNum::Num(1), end: SeqNum::Num(next - 1) }]),
            },
        };
        return (fetch::resync(tag, known, q.modseq, code, text), Some(Box::new(sel)));
    }
    out.tagged(tag, "OK", Some(code), text);
    (Directive::Next, Some(Box::new(sel)))
}
