//! LOGOUT (RFC 9051 6.1.3).

use crate::proto::Out;
use crate::session::state::{Directive, Step};

pub fn run(tag: &str, out: &mut Out) -> Directive {
    out.untagged_status("BYE", None, "Logging out");
    out.tagged(tag, "OK", None, "Logout completed.");
    Directive::Return(Step::Close)
}
