//! NOOP (RFC 9051 6.1.2): does nothing but deliver pending mailbox updates.

use crate::session::reply::ok;
use crate::session::state::Directive;

pub fn run(tag: &str) -> Directive {
    ok(tag, None, "NOOP completed.")
}
