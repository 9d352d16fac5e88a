//! How commands answer: tagged OK (after the pending mailbox updates), NO
//! and BAD with their response codes, answers that wait for durability,
//! and the updates a session is owed before or during a command.

use super::selected::{Selected, Synced};
use super::state::{Cursor, Cx, Directive, Durable, InMailbox, Progress, Session, Step, Then, OUTPUT_BUDGET};
use crate::proto::Out;
use crate::store::{MailboxError, StoreError, Ticket};

/// The pending mailbox updates (in slices under the output budget), then
/// the tagged OK. Whether EXPUNGE may be among them is the command's, from
/// the command table (RFC 9051 7.5.1).
pub(crate) fn ok(tag: &str, code: Option<&str>, text: &str) -> Directive {
    Directive::Run(Box::new(Finish { tag: tag.to_string(), code: code.map(str::to_string), text: text.to_string() }))
}

pub(crate) fn no(out: &mut Out, tag: &str, code: Option<&str>, text: &str) -> Directive {
    out.tagged(tag, "NO", code, text);
    Directive::Next
}

pub(crate) fn bad(out: &mut Out, tag: &str, text: &str) -> Directive {
    out.tagged(tag, "BAD", None, text);
    Directive::Next
}

/// The pending updates, then the tagged OK.
struct Finish {
    tag: String,
    code: Option<String>,
    text: String,
}

impl Cursor for Finish {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress {
        let expunge_ok = s.cx.expunge_ok;
        if let Some(m) = s.in_mailbox() {
            match sync_step(m.cx, m.sel, out, expunge_ok) {
                Synced::More => return Progress::More,
                Synced::Deleted => return Progress::Done(Directive::Return(Step::Close)),
                Synced::Done => {}
            }
            if let Some(told) = m.sel.held_back() {
                out.untagged_status("OK", Some(&format!("HIGHESTMODSEQ {told}")), "Expunges are held back");
            }
        }
        out.tagged(&self.tag, "OK", self.code.as_deref(), &self.text);
        Progress::Done(Directive::Next)
    }
}

/// One slice of the selected mailbox's pending updates. Deleted under the
/// session: BYE, and the caller ends the session.
pub(crate) fn sync_step(cx: &Cx, sel: &mut Selected, out: &mut Out, expunge_ok: bool) -> Synced {
    let r = sel.sync_step(out, cx.enabled, expunge_ok, OUTPUT_BUDGET);
    if r == Synced::Deleted {
        out.untagged_status("BYE", None, "Selected mailbox was deleted, have to disconnect.");
    }
    r
}

/// The first phase of a UID command: catching up with the mailbox (RFC
/// 9051 7.5.1: UID commands may carry EXPUNGE responses, so the session
/// catches up first and UIDs resolve against the mailbox as it is). Some:
/// return that progress now.
pub(crate) fn catch_up(m: &mut InMailbox<'_>, out: &mut Out, pending: &mut bool) -> Option<Progress> {
    if !*pending {
        return None;
    }
    match sync_step(m.cx, m.sel, out, true) {
        Synced::More => Some(Progress::More),
        Synced::Deleted => Some(Progress::Done(Directive::Return(Step::Close))),
        Synced::Done => {
            *pending = false;
            None
        }
    }
}

/// A CONDSTORE-enabling command (RFC 7162 3.1: FETCH MODSEQ or
/// CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ). The first one with a
/// mailbox selected announces its HIGHESTMODSEQ, before its own responses.
pub(crate) fn enable_condstore(m: &mut InMailbox<'_>, out: &mut Out) {
    if m.cx.enabled.condstore {
        return;
    }
    m.cx.enabled.condstore = true;
    m.sel.condstore = true;
    let hms = m.sel.mbox.borrow().highest_modseq();
    out.untagged_status("OK", Some(&format!("HIGHESTMODSEQ {hms}")), "Highest");
}

/// What a user moving to another backend hears (`ringmail user move`).
pub(crate) const MOVING: &str = "Your mail is moving to another server; connect again in a moment";

/// Answers a store failure.
pub(crate) fn store_error(out: &mut Out, tag: &str, e: &StoreError) -> Directive {
    match e {
        StoreError::TooManyKeywords => no(out, tag, Some("LIMIT"), "Too many keywords in this mailbox"),
        // RFC 5530 OVERQUOTA, with Dovecot's text for a full disk.
        StoreError::Full => no(out, tag, Some("OVERQUOTA"), "Not enough disk space"),
        // RFC 9208 4.3.1, with Dovecot's text.
        StoreError::OverQuota => no(out, tag, Some("OVERQUOTA"), "Quota exceeded (mailbox for user is full)"),
        StoreError::Poisoned => no(out, tag, Some("UNAVAILABLE"), "Mailbox is temporarily read-only after a storage error"),
        StoreError::Moving => no(out, tag, Some("UNAVAILABLE"), MOVING),
        StoreError::Io(err) => {
            tracing::error!(error = %err, "storage error");
            no(out, tag, Some("SERVERBUG"), "Internal storage error")
        }
    }
}

/// Answers the mailbox errors every mailbox command can meet.
pub(crate) fn mailbox_error(out: &mut Out, tag: &str, e: MailboxError) -> Directive {
    match e {
        MailboxError::NonExistent => no(out, tag, Some("NONEXISTENT"), "Mailbox doesn't exist"),
        MailboxError::NoSelect => no(out, tag, Some("NONEXISTENT"), "Mailbox is not selectable"),
        MailboxError::AlreadyExists => no(out, tag, Some("ALREADYEXISTS"), "Mailbox already exists"),
        MailboxError::HasChildren => no(out, tag, Some("HASCHILDREN"), "Mailbox has children, delete them first"),
        MailboxError::InvalidName(_) => no(out, tag, Some("CANNOT"), "Invalid mailbox name"),
        MailboxError::Forbidden(why) => no(out, tag, Some("CANNOT"), why),
        MailboxError::Moving => no(out, tag, Some("UNAVAILABLE"), MOVING),
        MailboxError::Io(err) => {
            tracing::error!(error = %err, "mailbox operation failed");
            no(out, tag, Some("SERVERBUG"), "Internal storage error")
        }
    }
}

/// Answers a change that could not be made durable.
pub(crate) fn not_durable(out: &mut Out, tag: &str, e: &std::io::Error) -> Directive {
    if crate::store::io::is_full(e) {
        return no(out, tag, Some("OVERQUOTA"), "Not enough disk space");
    }
    tracing::error!(error = %e, "change not durable");
    no(out, tag, Some("SERVERBUG"), "The change could not be stored durably")
}

/// Waits for `ticket` (the network layer awaits it), then runs `then`.
pub(crate) fn when_durable(ticket: Ticket, then: Then) -> Directive {
    Directive::Await(Box::new(Durable { ticket, then }))
}

/// The tagged OK (after the pending updates) once the change is durable;
/// NO if it could not be made so.
pub(crate) fn ok_when_durable(ticket: Ticket, tag: &str, code: Option<String>, text: &'static str) -> Directive {
    let tag = tag.to_string();
    when_durable(
        ticket,
        Box::new(move |r, out| match r {
            Ok(()) => ok(&tag, code.as_deref(), text),
            Err(e) => not_durable(out, &tag, &e),
        }),
    )
}
