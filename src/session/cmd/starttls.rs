//! STARTTLS (RFC 9051 6.2.1). After the OK the network layer discards any
//! input the client pipelined behind the command and starts the handshake.

use super::{bad, Directive, Session, Step, Wait};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    if s.facts.tls {
        return bad(out, tag, "TLS is already active");
    }
    if !s.cfg.starttls {
        return bad(out, tag, "STARTTLS is not available on this connection");
    }
    out.tagged(tag, "OK", None, "Begin TLS negotiation now.");
    s.wait = Wait::StartTls;
    Directive::Return(Step::StartTls)
}
