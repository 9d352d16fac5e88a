//! NAMESPACE (RFC 2342, RFC 9051 6.3.10): one personal namespace, no others.

use crate::proto::Out;
use crate::session::reply::ok;
use crate::session::state::Directive;

pub fn run(tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    ok(tag, None, "Namespace completed.")
}
