//! CLOSE (RFC 9051 6.4.1) expunges silently and deselects; UNSELECT (6.4.2)
//! only deselects.

use super::{mailbox_durable, not_durable, store_error, when_durable, Directive, Session, State};
use crate::proto::Out;
use crate::store::format::F_DELETED;

pub fn run(s: &mut Session, tag: &str, expunge: bool, out: &mut Out) -> Directive {
    let State::Selected(a, sel) = std::mem::replace(&mut s.state, State::Logout) else { unreachable!("state checked by dispatch") };
    sel.close();
    s.state = State::Authenticated(a);
    if expunge && !sel.read_only {
        let doomed: Vec<u32> = sel.mbox.borrow().msgs().iter().filter(|m| m.flags & F_DELETED != 0).map(|m| m.uid).collect();
        let r = sel.mbox.borrow_mut().expunge(&doomed);
        match r {
            Err(e) => return store_error(out, tag, &e),
            Ok(gone) if !gone.is_empty() => {
                let ticket = mailbox_durable(s, &sel.mbox);
                let tag = tag.to_string();
                return when_durable(
                    s,
                    ticket,
                    Box::new(move |_, r, out| match r {
                        Ok(()) => {
                            out.tagged(&tag, "OK", None, "Close completed.");
                            Directive::Next
                        }
                        Err(e) => not_durable(out, &tag, &e),
                    }),
                );
            }
            Ok(_) => {}
        }
    }
    out.tagged(tag, "OK", None, if expunge { "Close completed." } else { "Unselect completed." });
    Directive::Next
}
