//! AUTHENTICATE (RFC 9051 6.2.2) with SASL PLAIN (RFC 4616) and LOGIN, and
//! the initial response of SASL-IR (RFC 4959).

use super::login::{check, privacy_ok, refuse_cleartext};
use crate::auth::sasl::{self, Mechanism};
use crate::proto::Out;
use crate::session::reply::{bad, no};
use crate::session::state::{Cx, Directive, Wait};

pub fn run(cx: &mut Cx, tag: String, mechanism: &str, initial: Option<Vec<u8>>, out: &mut Out) -> Directive {
    if !privacy_ok(cx) {
        return refuse_cleartext(out, &tag);
    }
    match (mechanism, initial) {
        ("PLAIN", Some(ir)) => match sasl::decode(&ir) {
            Some(r) => plain(cx, tag, &r, out),
            None => bad(out, &tag, "Invalid base64 in initial response"),
        },
        ("PLAIN", None) => challenge(cx, tag, Mechanism::Plain, b"", out),
        ("LOGIN", Some(ir)) => match sasl::decode(&ir) {
            Some(user) => challenge(cx, tag, Mechanism::LoginPassword(user), b"Password:", out),
            None => bad(out, &tag, "Invalid base64 in initial response"),
        },
        ("LOGIN", None) => challenge(cx, tag, Mechanism::LoginUser, b"Username:", out),
        _ => no(out, &tag, Some("CANNOT"), "Unsupported authentication mechanism."),
    }
}

fn challenge(cx: &mut Cx, tag: String, mech: Mechanism, text: &[u8], out: &mut Out) -> Directive {
    out.raw(b"+ ").str(&sasl::encode(text)).crlf();
    cx.wait = Wait::AuthLine { tag, mech };
    Directive::ExpectAuthLine
}

/// PLAIN's response; proxy authorization is refused.
fn plain(cx: &mut Cx, tag: String, r: &[u8], out: &mut Out) -> Directive {
    let Some((authz, user, pass)) = sasl::plain(r) else {
        return bad(out, &tag, "Malformed PLAIN response");
    };
    if !authz.is_empty() && authz != user {
        return no(out, &tag, Some("AUTHORIZATIONFAILED"), "Logging in as another user is not allowed.");
    }
    check(cx, tag, user.to_vec(), pass.to_vec(), out)
}

/// A client line answering our challenge.
pub fn line(cx: &mut Cx, line: &[u8], out: &mut Out) -> Directive {
    let Wait::AuthLine { tag, mech } = std::mem::replace(&mut cx.wait, Wait::None) else {
        return Directive::Next;
    };
    if line == b"*" {
        return bad(out, &tag, "Authentication canceled.");
    }
    let Some(r) = sasl::decode(line) else {
        return bad(out, &tag, "Invalid base64 in response");
    };
    match mech {
        Mechanism::Plain => plain(cx, tag, &r, out),
        Mechanism::LoginUser => challenge(cx, tag, Mechanism::LoginPassword(r), b"Password:", out),
        Mechanism::LoginPassword(user) => check(cx, tag, user, r, out),
    }
}
