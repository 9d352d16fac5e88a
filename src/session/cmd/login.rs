//! LOGIN (RFC 9051 6.2.3), and the completion shared with AUTHENTICATE once
//! the network layer has checked the password.

use super::{no, Directive, Session, State, Step, Wait};
use crate::auth::AuthResult;
use crate::proto::Out;
use crate::session::Authed;

/// RFC 9051 6.2.3 / RFC 8314: no cleartext passwords off trusted networks.
pub(crate) fn privacy_ok(s: &Session) -> bool {
    s.facts.tls || s.facts.cleartext_ok
}

pub(crate) fn refuse_cleartext(out: &mut Out, tag: &str) -> Directive {
    no(out, tag, Some("PRIVACYREQUIRED"), "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
}

pub fn run(s: &mut Session, tag: String, user: Vec<u8>, password: Vec<u8>, out: &mut Out) -> Directive {
    if !privacy_ok(s) {
        return refuse_cleartext(out, &tag);
    }
    check(s, tag, user, password, out)
}

/// Asks the network layer to verify credentials.
pub(crate) fn check(s: &mut Session, tag: String, user: Vec<u8>, password: Vec<u8>, out: &mut Out) -> Directive {
    let Ok(user) = String::from_utf8(user) else {
        return no(out, &tag, Some("AUTHENTICATIONFAILED"), "Authentication failed.");
    };
    s.wait = Wait::Auth { tag };
    Directive::Return(Step::Authenticate { user, password })
}

/// Completes LOGIN or AUTHENTICATE with the verification result.
pub fn finish(s: &mut Session, result: AuthResult, out: &mut Out) -> Step {
    let Wait::Auth { tag } = std::mem::replace(&mut s.wait, Wait::None) else {
        return Step::Read;
    };
    match result {
        AuthResult::Ok(user) => {
            s.state = State::Authenticated(Authed { user: user.clone(), store: None });
            let caps = s.capabilities();
            out.tagged(&tag, "OK", Some(&caps), "Logged in");
            Step::LoggedIn(user)
        }
        AuthResult::Failed => {
            s.auth_failures += 1;
            out.tagged(&tag, "NO", Some("AUTHENTICATIONFAILED"), "Authentication failed.");
            if s.auth_failures >= s.cfg.max_auth_failures {
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
