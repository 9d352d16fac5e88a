//! NOOP (RFC 9051 6.1.2): does nothing but deliver pending mailbox updates.

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    ok(s, out, tag, None, "NOOP completed.", true)
}
