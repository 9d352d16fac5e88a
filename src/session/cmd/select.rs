//! SELECT and EXAMINE (RFC 9051 6.3.2, 6.3.3), with the CONDSTORE select
//! parameter (RFC 7162 3.1.8).

use super::{no, open_mailbox, Directive, Session, State};
use crate::proto::{Mailbox, Out};
use crate::session::Selected;

pub fn run(s: &mut Session, tag: &str, mailbox: &Mailbox, read_only: bool, condstore: bool, out: &mut Out) -> Directive {
    // Selecting closes the current mailbox first, whatever happens next.
    if matches!(s.state, State::Selected(..)) {
        let State::Selected(a, sel) = std::mem::replace(&mut s.state, State::Logout) else { unreachable!("just matched") };
        sel.close();
        s.state = State::Authenticated(a);
        out.untagged_status("OK", Some("CLOSED"), "Previous mailbox closed.");
    }
    let name = match s.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let mbox = match open_mailbox(s, &name) {
        Ok(m) => m,
        Err((code, text)) => return no(out, tag, code, &text),
    };
    if condstore {
        s.enabled.condstore = true;
    }
    let canonical = crate::store::manifest::canonical(&name).unwrap_or(name);
    let mut sel = Selected::open(mbox, canonical, read_only, s.signal.clone(), s.enabled.condstore);
    let rev2 = s.enabled.rev2;
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
        if s.enabled.condstore {
            out.untagged_status("OK", Some(&format!("HIGHESTMODSEQ {}", mb.highest_modseq())), "Highest");
        }
        if rev2 {
            out.raw(b"* LIST () \"/\" ").mailbox(&sel.name, true).crlf();
        }
    }
    let State::Authenticated(a) = std::mem::replace(&mut s.state, State::Logout) else { unreachable!("deselected above") };
    s.state = State::Selected(a, Box::new(sel));
    let (code, text) = if read_only { ("READ-ONLY", "Examine completed.") } else { ("READ-WRITE", "Select completed.") };
    out.tagged(tag, "OK", Some(code), text);
    Directive::Next
}
