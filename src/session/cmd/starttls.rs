//! STARTTLS (RFC 9051 6.2.1). After the OK the network layer discards any
//! input the client pipelined behind the command and starts the handshake.

use crate::proto::Out;
use crate::session::reply::bad;
use crate::session::state::{Cx, Directive, Step, Wait};

pub fn run(cx: &mut Cx, tag: &str, out: &mut Out) -> Directive {
    if cx.facts.tls {
        return bad(out, tag, "TLS is already active");
    }
    if !cx.cfg.starttls {
        return bad(out, tag, "STARTTLS is not available on this connection");
    }
    out.tagged(tag, "OK", None, "Begin TLS negotiation now.");
    cx.wait = Wait::StartTls;
    Directive::Return(Step::StartTls)
}
