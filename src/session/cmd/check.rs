//! CHECK (RFC 3501 6.4.1): a checkpoint request. Every acknowledged change
//! is already durable, so it only delivers pending updates.

use crate::session::reply::ok;
use crate::session::state::Directive;

pub fn run(tag: &str) -> Directive {
    ok(tag, None, "Check completed.")
}
