//! LOGOUT (RFC 9051 6.1.3).

use super::{Directive, Session, State, Step};
use crate::proto::Out;

pub fn run(s: &mut Session, tag: &str, out: &mut Out) -> Directive {
    if let State::Selected(_, sel) = &s.state {
        sel.close();
    }
    out.untagged_status("BYE", None, "Logging out");
    out.tagged(tag, "OK", None, "Logout completed.");
    s.state = State::Logout;
    Directive::Return(Step::Close)
}
