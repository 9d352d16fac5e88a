//! LOGIN (RFC 9051 6.2.3), and the completion shared with AUTHENTICATE once
//! the network layer has checked the password.

use crate::auth::AuthResult;
use crate::proto::Out;
use crate::session::reply::no;
use crate::session::state::{Cx, Directive, Session, State, Step, Wait};

/// RFC 9051 6.2.3 / RFC 8314: no cleartext passwords off trusted networks.
pub(crate) fn privacy_ok(cx: &Cx) -> bool {
    cx.facts.tls || cx.facts.cleartext_ok
}

pub(crate) fn refuse_cleartext(out: &mut Out, tag: &str) -> Directive {
    no(out, tag, Some("PRIVACYREQUIRED"), "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
}

pub fn run(cx: &mut Cx, tag: String, user: Vec<u8>, password: Vec<u8>, out: &mut Out) -> Directive {
    if !privacy_ok(cx) {
        return refuse_cleartext(out, &tag);
    }
    check(cx, tag, user, password, out)
}

/// Asks the network layer to verify credentials.
pub(crate) fn check(cx: &mut Cx, tag: String, user: Vec<u8>, password: Vec<u8>, out: &mut Out) -> Directive {
    let Ok(user) = String::from_utf8(user) else {
        return no(out, &tag, Some("AUTHENTICATIONFAILED"), "Authentication failed.");
    };
    cx.wait = Wait::Auth { tag };
    Directive::Return(Step::Authenticate { user, password })
}

/// Completes LOGIN or AUTHENTICATE with the verification result.
pub fn finish(s: &mut Session, result: AuthResult, out: &mut Out) -> Step {
    let Wait::Auth { tag } = std::mem::replace(&mut s.cx.wait, Wait::None) else {
        return Step::Read;
    };
    match result {
        AuthResult::Ok(user) => {
            s.state = State::Attaching(user.clone());
            let caps = s.capabilities();
            out.tagged(&tag, "OK", Some(&caps), "Logged in");
            Step::LoggedIn(user)
        }
        AuthResult::Failed => {
            s.cx.auth_failures += 1;
            out.tagged(&tag, "NO", Some("AUTHENTICATIONFAILED"), "Authentication failed.");
            if s.cx.auth_failures >= s.cx.cfg.max_auth_failures {
                out.untagged_status("BYE", None, "Too many invalid authentication attempts");
                s.state = State::Logout;
                return Step::Close;
            }
            Step::Read
        }
        AuthResult::Unavailable => {
            out.tagged(&tag, "NO", Some("UNAVAILABLE"), "Temporary authentication failure, try again later.");
            Step::Read
        }
    }
}
