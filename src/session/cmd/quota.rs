//! QUOTA (RFC 9208): each user has one quota root, named "User quota" as
//! Dovecot names it, over all of their mailboxes; its STORAGE and MESSAGE
//! limits come from the user database or `[quota]` (see
//! `store/quota.rs` for how usage is counted and enforced).

use crate::proto::{Mailbox, Out};
use crate::session::reply::{no, ok, store_error};
use crate::session::state::{Authed, Directive};
use crate::store::quota::kib;
use crate::store::UserStore;

/// The quota root every mailbox of a user belongs to.
const ROOT: &[u8] = b"User quota";

/// GETQUOTA (4.1.1).
pub fn get(a: Authed<'_>, tag: &str, root: &[u8], out: &mut Out) -> Directive {
    if root != ROOT {
        return no(out, tag, Some("NONEXISTENT"), "Quota root does not exist");
    }
    match quota_line(&a.user.store, a.cx.utf8_names(), out) {
        Ok(()) => ok(tag, None, "Getquota completed."),
        Err(e) => store_error(out, tag, &e.into()),
    }
}

/// GETQUOTAROOT (4.1.2): the mailbox need not exist (it names the root a
/// new mailbox would have).
pub fn get_root(a: Authed<'_>, tag: &str, mailbox: &Mailbox, out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let name = crate::store::manifest::canonical(&name).unwrap_or(name);
    let utf8 = a.cx.utf8_names();
    out.raw(b"* QUOTAROOT ").mailbox(&name, utf8).sp().string(ROOT, utf8).crlf();
    match quota_line(&a.user.store, utf8, out) {
        Ok(()) => ok(tag, None, "Getquotaroot completed."),
        Err(e) => store_error(out, tag, &e.into()),
    }
}

/// SETQUOTA (4.1.3): not for users (QUOTASET is not advertised); an
/// administrator sets limits in the passwd-file or `[quota]`.
pub fn set(tag: &str, out: &mut Out) -> Directive {
    no(out, tag, Some("NOPERM"), "Quota limits are set by the administrator")
}

/// `* QUOTA "User quota" (STORAGE used limit MESSAGE used limit)`, with
/// only the limited resources (4.2.1: an empty list means no limits).
fn quota_line(store: &UserStore, utf8: bool, out: &mut Out) -> std::io::Result<()> {
    let usage = store.quota_usage()?;
    let limits = store.quota_limits();
    out.raw(b"* QUOTA ").string(ROOT, utf8).raw(b" (");
    let mut first = true;
    let mut triplet = |out: &mut Out, name: &str, used: u64, limit: Option<u64>| {
        if let Some(limit) = limit {
            if !first {
                out.sp();
            }
            first = false;
            out.str(name).sp().num(used).sp().num(limit);
        }
    };
    triplet(out, "STORAGE", kib(usage.bytes), limits.storage.map(kib));
    triplet(out, "MESSAGE", usage.messages, limits.messages);
    out.raw(b")\r\n");
    Ok(())
}
