//! CANCELUPDATE (RFC 5267 4.4): stop keeping these searches' results up
//! to date.

use crate::proto::Out;
use crate::session::contexts;
use crate::session::reply::{no, ok};
use crate::session::state::{Directive, InMailbox};

pub fn run(m: InMailbox<'_>, tag: &str, tags: &[String], out: &mut Out) -> Directive {
    if !contexts::cancel(&mut m.sel.contexts, tags) {
        return no(out, tag, None, "Unknown tag.");
    }
    ok(tag, None, "Updates cancelled.")
}
