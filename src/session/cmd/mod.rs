//! One file per command, registered in one table: [`allowed`] says in which
//! states a command is valid, [`dispatch`] runs it. Helpers every command
//! shares (finishing with the pending mailbox updates, mailbox names, flag
//! lists) live here.

pub mod append;
pub mod authenticate;
mod capability;
mod check;
mod close;
mod copy;
mod create;
mod delete;
mod enable;
mod expunge;
mod fetch;
mod id;
pub mod idle;
mod list;
pub mod login;
mod logout;
mod namespace;
mod noop;
mod rename;
mod search;
mod select;
mod starttls;
mod status;
mod store;
mod subscribe;

use super::{Cursor, Directive, Progress, Session, State, Step, Synced, Wait, OUTPUT_BUDGET};
use crate::proto::{Command, CommandBody, Mailbox, Out};
pub(crate) use crate::session::flags::{keyword_mask, split_flags};
use crate::store::{MailboxRef, StoreError, Ticket};

const NOT_AUTH: u8 = 1;
const AUTH: u8 = 2;
const SELECTED: u8 = 4;
const ANY: u8 = NOT_AUTH | AUTH | SELECTED;

/// The table: the states in which each command is valid (RFC 9051 6).
fn allowed(body: &CommandBody) -> u8 {
    use CommandBody::*;
    match body {
        Capability | Noop | Logout | Id(_) => ANY,
        StartTls | Authenticate { .. } | Login { .. } => NOT_AUTH,
        Enable(_) => AUTH,
        Select { .. } | Create(_) | Delete(_) | Rename { .. } | Subscribe(_) | Unsubscribe(_) | List(_) | Lsub { .. } | Namespace | Status { .. } | Idle => {
            AUTH | SELECTED
        }
        Check | Close | Unselect | Expunge { .. } | Copy { .. } | Move { .. } | Fetch { .. } | Store { .. } | Search { .. } => SELECTED,
    }
}

pub(crate) fn dispatch(s: &mut Session, c: Command, now: i64, out: &mut Out) -> Directive {
    let current = match s.state {
        State::NotAuthenticated => NOT_AUTH,
        State::Authenticated(_) => AUTH,
        State::Selected(..) => SELECTED,
        State::Logout => return Directive::Return(Step::Close),
    };
    let ok = allowed(&c.body);
    if ok & current == 0 {
        let text = if current == NOT_AUTH {
            "Command not valid before authentication"
        } else if ok == SELECTED {
            "No mailbox selected"
        } else if ok == NOT_AUTH {
            "Already authenticated"
        } else {
            "ENABLE is not valid while a mailbox is selected"
        };
        out.tagged(&c.tag, "BAD", None, text);
        return Directive::Next;
    }
    let tag = c.tag;
    use CommandBody::*;
    match c.body {
        Capability => capability::run(s, &tag, out),
        Noop => noop::run(s, &tag, out),
        Logout => logout::run(s, &tag, out),
        Id(_) => id::run(s, &tag, out),
        StartTls => starttls::run(s, &tag, out),
        Login { user, password } => login::run(s, tag, user, password, out),
        Authenticate { mechanism, initial } => authenticate::run(s, tag, &mechanism, initial, out),
        Enable(caps) => enable::run(s, &tag, &caps, out),
        Select { mailbox, read_only, params } => select::run(s, &tag, &mailbox, read_only, params.condstore, out),
        Create(m) => create::run(s, &tag, &m, now, out),
        Delete(m) => delete::run(s, &tag, &m, out),
        Rename { from, to } => rename::run(s, &tag, &from, &to, now, out),
        Subscribe(m) => subscribe::run(s, &tag, &m, true, out),
        Unsubscribe(m) => subscribe::run(s, &tag, &m, false, out),
        List(args) => list::run(s, &tag, &args, out),
        Lsub { reference, pattern } => list::lsub(s, &tag, &reference, &pattern, out),
        Namespace => namespace::run(s, &tag, out),
        Status { mailbox, items } => status::run(s, &tag, &mailbox, &items, out),
        Idle => idle::run(s, tag, out),
        Check => check::run(s, &tag, out),
        Close => close::run(s, &tag, true, out),
        Unselect => close::run(s, &tag, false, out),
        Expunge { uids } => expunge::run(s, &tag, uids.as_ref(), out),
        Copy { set, mailbox, uid } => copy::run(s, tag, &set, &mailbox, uid, false, out),
        Move { set, mailbox, uid } => copy::run(s, tag, &set, &mailbox, uid, true, out),
        Fetch { set, items, uid, modifiers } => fetch::run(s, &tag, &set, &items, uid, &modifiers, out),
        Store { set, op, silent, flags, uid, unchanged_since } => store::run(s, &tag, &set, op, silent, &flags, uid, unchanged_since, out),
        Search { ret, charset, key, uid } => search::run(s, &tag, ret.as_deref(), charset.as_deref(), &key, uid, out),
    }
}

impl Session {
    /// Whether mailbox names are UTF-8 on the wire (IMAP4rev2, RFC 9051 5.1).
    pub(crate) fn utf8_names(&self) -> bool {
        self.enabled.rev2 || self.enabled.utf8
    }

    /// A mailbox name from the client, decoded: UTF-8 under IMAP4rev2,
    /// modified UTF-7 otherwise.
    pub(crate) fn mailbox_name(&self, m: &Mailbox) -> Result<String, &'static str> {
        if self.utf8_names() {
            String::from_utf8(m.0.clone()).map_err(|_| "Mailbox name is not valid UTF-8")
        } else {
            crate::proto::utf7::decode(&m.0).ok_or("Mailbox name is not valid modified UTF-7")
        }
    }
}

/// Sends the pending mailbox updates and the tagged OK. `expunge_ok` is
/// false for FETCH, STORE and SEARCH (RFC 9051 7.5.1). Many updates go
/// out in slices under the output budget before the OK.
pub(crate) fn ok(s: &mut Session, out: &mut Out, tag: &str, code: Option<&str>, text: &str, expunge_ok: bool) -> Directive {
    let finish = Finish { tag: tag.to_string(), code: code.map(str::to_string), text: text.to_string(), expunge_ok };
    run_cursor(s, Box::new(finish), out)
}

/// The pending updates, then the tagged OK.
struct Finish {
    tag: String,
    code: Option<String>,
    text: String,
    expunge_ok: bool,
}

impl Cursor for Finish {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress {
        match sync_step(s, out, self.expunge_ok) {
            Synced::More => Progress::More,
            Synced::Deleted => Progress::Done(Directive::Return(Step::Close)),
            Synced::Done => {
                out.tagged(&self.tag, "OK", self.code.as_deref(), &self.text);
                Progress::Done(Directive::Next)
            }
        }
    }
}

/// Starts a command that runs in slices: its first slice now, the rest
/// after flushes (see `Connection::step`).
pub(crate) fn run_cursor(s: &mut Session, mut c: Box<dyn Cursor>, out: &mut Out) -> Directive {
    match c.resume(s, out) {
        Progress::Done(d) => d,
        Progress::More => {
            s.wait = Wait::Running(c);
            Directive::Return(Step::Flush)
        }
    }
}

/// A CONDSTORE-enabling command (RFC 7162 3.1: FETCH MODSEQ or
/// CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ). The first one with a
/// mailbox selected announces its HIGHESTMODSEQ, before its own responses.
pub(crate) fn enable_condstore(s: &mut Session, out: &mut Out) {
    if s.enabled.condstore {
        return;
    }
    s.enabled.condstore = true;
    if let State::Selected(_, sel) = &mut s.state {
        sel.condstore = true;
        let hms = sel.mbox.borrow().highest_modseq();
        out.untagged_status("OK", Some(&format!("HIGHESTMODSEQ {hms}")), "Highest");
    }
}

/// The first phase of a UID command: catching up with the mailbox (RFC
/// 9051 7.5.1: UID commands may carry EXPUNGE responses, so the session
/// catches up first and UIDs resolve against the mailbox as it is). Some:
/// return that progress now.
pub(crate) fn catch_up(s: &mut Session, out: &mut Out, pending: &mut bool) -> Option<Progress> {
    if !*pending {
        return None;
    }
    match sync_step(s, out, true) {
        Synced::More => Some(Progress::More),
        Synced::Deleted => Some(Progress::Done(Directive::Return(Step::Close))),
        Synced::Done => {
            *pending = false;
            None
        }
    }
}

/// One slice of the selected mailbox's pending updates. Deleted under the
/// session: it ends with BYE.
pub(crate) fn sync_step(s: &mut Session, out: &mut Out, expunge_ok: bool) -> Synced {
    let enabled = s.enabled;
    let State::Selected(_, sel) = &mut s.state else { return Synced::Done };
    match sel.sync_step(out, enabled, expunge_ok, OUTPUT_BUDGET) {
        Synced::Deleted => {
            out.untagged_status("BYE", None, "Selected mailbox was deleted, have to disconnect.");
            s.state = State::Logout;
            Synced::Deleted
        }
        r => r,
    }
}

pub(crate) fn no(out: &mut Out, tag: &str, code: Option<&str>, text: &str) -> Directive {
    out.tagged(tag, "NO", code, text);
    Directive::Next
}

pub(crate) fn bad(out: &mut Out, tag: &str, text: &str) -> Directive {
    out.tagged(tag, "BAD", None, text);
    Directive::Next
}

/// Answers a store failure.
pub(crate) fn store_error(out: &mut Out, tag: &str, e: &StoreError) -> Directive {
    match e {
        StoreError::TooManyKeywords => no(out, tag, Some("LIMIT"), "Too many keywords in this mailbox"),
        // RFC 5530 OVERQUOTA, with Dovecot's text for a full disk.
        StoreError::Full => no(out, tag, Some("OVERQUOTA"), "Not enough disk space"),
        StoreError::Poisoned => no(out, tag, Some("UNAVAILABLE"), "Mailbox is temporarily read-only after a storage error"),
        StoreError::Io(err) => {
            tracing::error!(error = %err, "storage error");
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

/// What a command does once its changes are durable, or could not be made so.
pub(crate) type Then = Box<dyn FnOnce(&mut Session, std::io::Result<()>, &mut Out) -> Directive>;

/// A command waiting for the store to sync before it answers.
pub(crate) struct Durable {
    pub ticket: Ticket,
    then: Then,
}

/// Waits for `ticket` (the network layer awaits it), then runs `then`.
pub(crate) fn when_durable(s: &mut Session, ticket: Ticket, then: Then) -> Directive {
    s.wait = Wait::Durable(Box::new(Durable { ticket, then }));
    Directive::Return(Step::AwaitDurable)
}

/// The tagged OK (after the pending updates) once the change is durable;
/// NO if it could not be made so.
pub(crate) fn ok_when_durable(s: &mut Session, ticket: Ticket, tag: &str, code: Option<String>, text: &'static str, expunge_ok: bool) -> Directive {
    let tag = tag.to_string();
    when_durable(
        s,
        ticket,
        Box::new(move |s, r, out| match r {
            Ok(()) => ok(s, out, &tag, code.as_deref(), text, expunge_ok),
            Err(e) => not_durable(out, &tag, &e),
        }),
    )
}

/// Runs the waiting command's continuation with the sync's result.
pub(crate) fn finish_durable(s: &mut Session, out: &mut Out) -> Directive {
    let Wait::Durable(d) = std::mem::replace(&mut s.wait, Wait::None) else { return Directive::Next };
    let Durable { ticket, then } = *d;
    let r = ticket.result().unwrap_or_else(|| Err(std::io::Error::other("the sync did not finish")));
    then(s, r, out)
}

/// A ticket for the changes to a mailbox of the session's user.
pub(crate) fn mailbox_durable(s: &Session, mb: &MailboxRef) -> Ticket {
    s.state.authed().expect("authenticated").store().durable(mb)
}

/// A ticket for the session's user's list of mailboxes.
pub(crate) fn manifest_durable(s: &Session) -> Ticket {
    s.state.authed().expect("authenticated").store().manifest_durable()
}

/// A compact UID set (`1:3,7`) for COPYUID, keeping the given order.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            s.push_str(&start.to_string());
        } else {
            s.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    s
}

/// The mailbox of the Authenticated or Selected state by name, with the
/// RFC 5530 code for a missing one.
pub(crate) fn open_mailbox(s: &Session, name: &str) -> Result<MailboxRef, (Option<&'static str>, String)> {
    let a = s.state.authed().expect("called in authenticated states");
    a.store().mailbox(name).map_err(|e| match e {
        crate::store::MailboxError::NonExistent => (Some("NONEXISTENT"), format!("Mailbox doesn't exist: {name}")),
        crate::store::MailboxError::NoSelect => (Some("NONEXISTENT"), format!("Mailbox is not selectable: {name}")),
        crate::store::MailboxError::Io(e) => {
            tracing::error!(error = %e, mailbox = name, "cannot open mailbox");
            (Some("SERVERBUG"), "Internal error opening mailbox".to_string())
        }
        _ => (Some("CANNOT"), format!("Cannot open mailbox {name}")),
    })
}
