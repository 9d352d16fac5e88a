//! STATUS (RFC 9051 6.3.11), also used for LIST-STATUS (RFC 5819).

use crate::proto::{Mailbox, Out, StatusItem};
use crate::session::reply::{no, ok};
use crate::session::state::{Authed, Directive};
use crate::store::{MailboxRef, UserStore};

pub fn run(a: Authed<'_>, tag: &str, mailbox: &Mailbox, items: &[StatusItem], out: &mut Out) -> Directive {
    let name = match a.cx.mailbox_name(mailbox) {
        Ok(n) => n,
        Err(e) => return no(out, tag, Some("CANNOT"), e),
    };
    let mbox = match a.user.open_mailbox(&name) {
        Ok(m) => m,
        Err((code, text)) => return no(out, tag, code, &text),
    };
    let canonical = crate::store::manifest::canonical(&name).unwrap_or(name);
    status_line(out, &a.user.store, &canonical, &mbox, items, a.cx.utf8_names());
    ok(tag, None, "Status completed.")
}

/// `* STATUS name (ITEM value ...)`.
pub(crate) fn status_line(out: &mut Out, store: &UserStore, name: &str, mbox: &MailboxRef, items: &[StatusItem], utf8: bool) {
    let mb = mbox.borrow();
    out.raw(b"* STATUS ").mailbox(name, utf8).raw(b" (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.sp();
        }
        if let StatusItem::MailboxId = item {
            out.raw(b"MAILBOXID (").str(&store.mailbox_id(name).unwrap_or_default()).raw(b")");
            continue;
        }
        let v: u64 = match item {
            StatusItem::Messages => u64::from(mb.exists()),
            StatusItem::UidNext => u64::from(mb.uidnext()),
            StatusItem::UidValidity => u64::from(mb.uidvalidity()),
            StatusItem::Unseen => u64::from(mb.unseen()),
            StatusItem::Deleted => u64::from(mb.deleted()),
            StatusItem::Size => mb.size(),
            StatusItem::Recent => u64::from(mb.unclaimed_recent()),
            StatusItem::HighestModSeq => mb.highest_modseq(),
            StatusItem::DeletedStorage => crate::store::quota::kib(mb.deleted_size()),
            StatusItem::MailboxId => unreachable!("written above"),
        };
        out.str(item.name()).sp().num(v);
    }
    out.raw(b")\r\n");
}
