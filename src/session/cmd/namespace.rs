//! NAMESPACE (RFC 2342, RFC 9051 6.3.10): one personal namespace, no others.

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    ok(s, out, tag, None, "Namespace completed.", true)
}
