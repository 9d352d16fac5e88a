//! ID (RFC 2971): the server says who it is; what the client says is ignored.

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* ID (\"name\" \"ringmail\" \"version\" \"").str(env!("CARGO_PKG_VERSION")).raw(b"\")\r\n");
    ok(s, out, tag, None, "ID completed.", true)
}
