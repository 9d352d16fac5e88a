//! CAPABILITY (RFC 9051 6.1.1).

use crate::proto::Out;
use crate::session::reply::ok;
use crate::session::state::{Directive, Session};

pub fn run(s: &Session, tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* ").str(&s.capabilities()).crlf();
    ok(tag, None, "Capability completed.")
}
