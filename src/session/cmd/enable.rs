//! ENABLE (RFC 5161, RFC 9051 6.3.1): IMAP4rev2 and CONDSTORE.

use super::{ok, Directive, Session};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, caps: &[String], out: &mut Out) -> Directive {
    let mut newly = Vec::new();
    for c in caps {
        match c.as_str() {
            "IMAP4REV2" if !s.enabled.rev2 => {
                s.enabled.rev2 = true;
                newly.push("IMAP4rev2");
            }
            "CONDSTORE" if !s.enabled.condstore => {
                s.enabled.condstore = true;
                newly.push("CONDSTORE");
            }
            _ => {}
        }
    }
    out.raw(b"* ENABLED");
    for n in newly {
        out.sp().str(n);
    }
    out.crlf();
    ok(s, out, tag, None, "Enabled.", true)
}
