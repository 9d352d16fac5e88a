//! COMPRESS (RFC 4978): after the tagged OK the network layer compresses
//! every response and inflates every command, beneath TLS if that is on.

use crate::proto::Out;
use crate::session::reply::{bad, no};
use crate::session::state::{Cx, Directive, Step, Wait};

pub fn run(cx: &mut Cx, tag: &str, mechanism: &str, out: &mut Out) -> Directive {
    if mechanism != "DEFLATE" {
        return bad(out, tag, "Unknown compression mechanism");
    }
    if cx.facts.compressed {
        // RFC 4978 section 3 allows BAD or NO here; NO with the code says
        // why in a form clients can act on (as Dovecot does).
        return no(out, tag, Some("COMPRESSIONACTIVE"), "DEFLATE is already active.");
    }
    out.tagged(tag, "OK", None, "DEFLATE active");
    cx.wait = Wait::Compress;
    Directive::Return(Step::Compress)
}
