//! CHECK (RFC 3501 6.4.1): a checkpoint request. Every acknowledged change
//! is already durable, so it only delivers pending updates.

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    ok(s, out, tag, None, "Check completed.", true)
}
