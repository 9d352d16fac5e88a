//! AUTHENTICATE (RFC 9051 6.2.2) with SASL PLAIN (RFC 4616) and LOGIN, and
//! the initial response of SASL-IR (RFC 4959).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::login::{check, privacy_ok, refuse_cleartext};
use super::{bad, no, Directive, Session, Wait};
use crate::proto::Out;

pub enum Mechanism {
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPassword(Vec<u8>),
}

fn decode(b: &[u8]) -> Option<Vec<u8>> {
    if b == b"=" {
        return Some(Vec::new());
    }
    STANDARD.decode(b).ok()
}

pub fn run(s: &mut Session, tag: String, mechanism: &str, initial: Option<Vec<u8>>, out: &mut Out) -> Directive {
    if !privacy_ok(s) {
        return refuse_cleartext(out, &tag);
    }
    match (mechanism, initial) {
        ("PLAIN", Some(ir)) => match decode(&ir) {
            Some(r) => plain(s, tag, &r, out),
            None => bad(out, &tag, "Invalid base64 in initial response"),
        },
        ("PLAIN", None) => challenge(s, tag, Mechanism::Plain, b"", out),
        ("LOGIN", Some(ir)) => match decode(&ir) {
            Some(user) => challenge(s, tag, Mechanism::LoginPassword(user), b"Password:", out),
            None => bad(out, &tag, "Invalid base64 in initial response"),
        },
        ("LOGIN", None) => challenge(s, tag, Mechanism::LoginUser, b"Username:", out),
        _ => no(out, &tag, Some("CANNOT"), "Unsupported authentication mechanism."),
    }
}

fn challenge(s: &mut Session, tag: String, mech: Mechanism, text: &[u8], out: &mut Out) -> Directive {
    out.raw(b"+ ").str(&STANDARD.encode(text)).crlf();
    s.wait = Wait::AuthLine { tag, mech };
    Directive::ExpectAuthLine
}

/// authzid NUL authcid NUL password; proxy authorization is refused.
fn plain(s: &mut Session, tag: String, r: &[u8], out: &mut Out) -> Directive {
    let parts: Vec<&[u8]> = r.split(|&b| b == 0).collect();
    let [authz, user, pass] = parts[..] else {
        return bad(out, &tag, "Malformed PLAIN response");
    };
    if !authz.is_empty() && authz != user {
        return no(out, &tag, Some("AUTHORIZATIONFAILED"), "Logging in as another user is not allowed.");
    }
    check(s, tag, user.to_vec(), pass.to_vec(), out)
}

/// A client line answering our challenge.
pub fn line(s: &mut Session, line: &[u8], out: &mut Out) -> Directive {
    let Wait::AuthLine { tag, mech } = std::mem::replace(&mut s.wait, Wait::None) else {
        return Directive::Next;
    };
    if line == b"*" {
        return bad(out, &tag, "Authentication canceled.");
    }
    let Some(r) = decode(line) else {
        return bad(out, &tag, "Invalid base64 in response");
    };
    match mech {
        Mechanism::Plain => plain(s, tag, &r, out),
        Mechanism::LoginUser => challenge(s, tag, Mechanism::LoginPassword(r), b"Password:", out),
        Mechanism::LoginPassword(user) => check(s, tag, user, r, out),
    }
}
