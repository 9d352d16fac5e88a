//! ENABLE (RFC 5161, RFC 9051 6.3.1): IMAP4rev2, CONDSTORE, QRESYNC
//! (which turns CONDSTORE on too, RFC 7162 3.2.3) and UTF8=ACCEPT (RFC
//! 6855 3: UTF-8 mailbox names and quoted strings, and messages with UTF-8
//! header fields in APPEND).

use crate::proto::Out;
use crate::session::reply::ok;
use crate::session::state::{Cx, Directive};

pub fn run(cx: &mut Cx, tag: &str, caps: &[String], out: &mut Out) -> Directive {
    let mut newly = Vec::new();
    for c in caps {
        match c.as_str() {
            "IMAP4REV2" if !cx.enabled.rev2 => {
                cx.enabled.rev2 = true;
                newly.push("IMAP4rev2");
            }
            "CONDSTORE" if !cx.enabled.condstore => {
                cx.enabled.condstore = true;
                newly.push("CONDSTORE");
            }
            "QRESYNC" if !cx.enabled.qresync => {
                cx.enabled.qresync = true;
                cx.enabled.condstore = true;
                newly.push("QRESYNC");
            }
            "UTF8=ACCEPT" if !cx.enabled.utf8 => {
                cx.enabled.utf8 = true;
                newly.push("UTF8=ACCEPT");
            }
            _ => {}
        }
    }
    out.raw(b"* ENABLED");
    for n in newly {
        out.sp().str(n);
    }
    out.crlf();
    ok(tag, None, "Enabled.")
}
