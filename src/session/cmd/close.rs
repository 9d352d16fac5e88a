//! CLOSE (RFC 9051 6.4.1) expunges silently and deselects; UNSELECT (6.4.2)
//! only deselects.

use crate::proto::Out;
use crate::session::reply::{not_durable, store_error, when_durable};
use crate::session::selected::Selected;
use crate::session::state::{Authed, Directive};
use crate::store::format::F_DELETED;

/// `sel` was just left (the session is back in Authenticated).
pub fn run(a: Authed<'_>, sel: Box<Selected>, tag: &str, expunge: bool, out: &mut Out) -> Directive {
    if expunge && !sel.read_only {
        let doomed: Vec<u32> = sel.mbox.borrow().msgs().iter().filter(|m| m.flags & F_DELETED != 0).map(|m| m.uid).collect();
        let r = sel.mbox.borrow_mut().expunge(&doomed);
        match r {
            Err(e) => return store_error(out, tag, &e),
            Ok(gone) if !gone.is_empty() => {
                let tag = tag.to_string();
                return when_durable(
                    a.user.durable(&sel.mbox),
                    Box::new(move |r, out| match r {
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
