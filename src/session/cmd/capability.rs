//! CAPABILITY (RFC 9051 6.1.1).

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* ").str(&s.capabilities()).crlf();
    ok(s, out, tag, None, "Capability completed.", true)
}
