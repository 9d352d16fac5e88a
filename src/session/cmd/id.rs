//! ID (RFC 2971): the server says who it is; what the client says is ignored.

use crate::proto::Out;
use crate::session::reply::ok;
use crate::session::state::Directive;

pub fn run(tag: &str, out: &mut Out) -> Directive {
    out.raw(b"* ID (\"name\" \"ringmail\" \"version\" \"").str(env!("CARGO_PKG_VERSION")).raw(b"\")\r\n");
    ok(tag, None, "ID completed.")
}
