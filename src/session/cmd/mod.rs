//! The commands: the table of where each is valid, and dispatch to the
//! file that runs it. A command valid only with a mailbox selected gets
//! the mailbox ([`InMailbox`]), one valid once logged in gets the user
//! ([`Authed`]); this table is the one place that checks the state.

pub mod append;
pub mod authenticate;
mod cancelupdate;
mod capability;
mod check;
mod close;
mod compress;
mod copy;
mod create;
mod delete;
mod enable;
mod expunge;
pub(crate) mod fetch;
mod id;
pub mod idle;
pub(crate) mod list;
pub mod login;
mod logout;
mod metadata;
mod namespace;
mod noop;
pub(crate) mod notify;
mod quota;
mod rename;
mod search;
mod select;
mod sort;
mod starttls;
pub(crate) mod status;
mod store_flags;
mod subscribe;
mod thread;
mod urlauth;

use super::state::{Directive, Session, State, Step};
use crate::proto::{Command, CommandBody, Out};

const NOT_AUTH: u8 = 1;
const AUTH: u8 = 2;
const SELECTED: u8 = 4;
const ANY: u8 = NOT_AUTH | AUTH | SELECTED;

/// What the table says of a command.
struct Spec {
    /// The states in which it is valid (RFC 9051 6).
    states: u8,
    /// Whether its answer may carry EXPUNGE responses: not FETCH, STORE or
    /// SEARCH, whose sequence numbers the client is still using (RFC 9051
    /// 7.5.1); their UID forms may.
    expunge: bool,
}

fn spec(body: &CommandBody) -> Spec {
    use CommandBody::*;
    let states = match body {
        Capability | Noop | Logout | Id(_) => ANY,
        StartTls | Authenticate { .. } | Login { .. } => NOT_AUTH,
        Enable(_) => AUTH,
        Select { .. }
        | Create(..)
        | Delete(_)
        | Rename { .. }
        | Subscribe(_)
        | Unsubscribe(_)
        | List(_)
        | Lsub { .. }
        | Namespace
        | Status { .. }
        | Idle
        | Compress(_)
        | GetQuota(_)
        | GetQuotaRoot(_)
        | SetQuota { .. }
        | GetMetadata { .. }
        | SetMetadata { .. }
        | Notify(_)
        | GenUrlAuth(_)
        | ResetKey(_)
        | UrlFetch(_)
        | AppendWhole { .. } => AUTH | SELECTED,
        Check
        | Close
        | Unselect
        | Expunge { .. }
        | Copy { .. }
        | Move { .. }
        | Fetch { .. }
        | Store { .. }
        | Search { .. }
        | Sort { .. }
        | Thread { .. }
        | CancelUpdate(_) => SELECTED,
    };
    let expunge = match body {
        Fetch { uid, .. } | Store { uid, .. } | Search { uid, .. } | Sort { uid, .. } | Thread { uid, .. } => *uid,
        _ => true,
    };
    Spec { states, expunge }
}

/// The BAD for a command given in a state where it is not valid.
fn refuse(out: &mut Out, tag: &str, current: u8, valid: u8) -> Directive {
    let text = if current == NOT_AUTH {
        "Command not valid before authentication"
    } else if valid == SELECTED {
        "No mailbox selected"
    } else if valid == NOT_AUTH {
        "Already authenticated"
    } else {
        "ENABLE is not valid while a mailbox is selected"
    };
    out.tagged(tag, "BAD", None, text);
    Directive::Next
}

pub(crate) fn dispatch(s: &mut Session, c: Command, now: i64, out: &mut Out) -> Directive {
    let current = match &s.state {
        State::NotAuthenticated => NOT_AUTH,
        State::Attaching(user) => return Directive::Return(Step::LoggedIn(user.clone())),
        State::Authenticated(_) => AUTH,
        State::Selected(..) => SELECTED,
        State::Logout => return Directive::Return(Step::Close),
    };
    let spec = spec(&c.body);
    if spec.states & current == 0 {
        return refuse(out, &c.tag, current, spec.states);
    }
    s.cx.expunge_ok = spec.expunge;
    let tag = c.tag;
    // The parts of the session each command needs; the check above
    // guarantees them, `refuse` answers if that ever fails.
    macro_rules! authed {
        () => {
            match s.authed() {
                Some(a) => a,
                None => return refuse(out, &tag, current, spec.states),
            }
        };
    }
    macro_rules! in_mailbox {
        () => {
            match s.in_mailbox() {
                Some(m) => m,
                None => return refuse(out, &tag, current, spec.states),
            }
        };
    }
    use CommandBody::*;
    match c.body {
        Capability => capability::run(s, &tag, out),
        Noop => noop::run(&tag),
        Logout => logout::run(&tag, out),
        Id(_) => id::run(&tag, out),
        StartTls => starttls::run(&mut s.cx, &tag, out),
        Compress(mechanism) => compress::run(&mut s.cx, &tag, &mechanism, out),
        Login { user, password } => login::run(&mut s.cx, tag, user, password, out),
        Authenticate { mechanism, initial } => authenticate::run(&mut s.cx, tag, &mechanism, initial, out),
        Enable(caps) => enable::run(&mut s.cx, &tag, &caps, out),
        Select { mailbox, read_only, params } => {
            // RFC 7162 3.2.5: the QRESYNC parameter needs ENABLE QRESYNC.
            if params.qresync.is_some() && !s.cx.enabled.qresync {
                return super::reply::bad(out, &tag, "QRESYNC needs ENABLE QRESYNC first");
            }
            if s.deselect().is_some() {
                out.untagged_status("OK", Some("CLOSED"), "Previous mailbox closed.");
            }
            let (d, opened) = select::run(authed!(), &tag, &mailbox, read_only, &params, out);
            if let Some(sel) = opened {
                s.enter(sel);
            }
            d
        }
        Create(m, uses) => create::run(authed!(), &tag, &m, &uses, now, out),
        Delete(m) => {
            delete::leave_if_selected(s, &m, out);
            delete::run(authed!(), &tag, &m, out)
        }
        Rename { from, to } => rename::run(authed!(), &tag, &from, &to, now, out),
        Subscribe(m) => subscribe::run(authed!(), &tag, &m, true, out),
        Unsubscribe(m) => subscribe::run(authed!(), &tag, &m, false, out),
        List(args) => list::run(authed!(), &tag, &args, out),
        Lsub { reference, pattern } => list::lsub(authed!(), &tag, &reference, &pattern, out),
        Namespace => namespace::run(&tag, out),
        Status { mailbox, items } => status::run(authed!(), &tag, &mailbox, &items, out),
        GetQuota(root) => quota::get(authed!(), &tag, &root, out),
        GetQuotaRoot(mailbox) => quota::get_root(authed!(), &tag, &mailbox, out),
        SetQuota { .. } => quota::set(&tag, out),
        GetMetadata { mailbox, entries, max_size, depth } => metadata::get(authed!(), &tag, &mailbox, &entries, max_size, depth, out),
        SetMetadata { mailbox, values } => metadata::set(authed!(), &tag, &mailbox, &values, out),
        Notify(set) => notify::run(s, &tag, set, out),
        GenUrlAuth(urls) => urlauth::generate(authed!(), &tag, &urls, out),
        ResetKey(which) => urlauth::reset(authed!(), &tag, which.as_ref(), out),
        UrlFetch(items) => urlauth::fetch(authed!(), &tag, &items, now, out),
        AppendWhole { mailbox, messages, replace } => append::run_whole(s, &tag, &mailbox, messages, replace, now, out),
        Idle => idle::run(tag),
        Check => check::run(&tag),
        Close | Unselect => {
            let Some(sel) = s.deselect() else { return refuse(out, &tag, current, spec.states) };
            close::run(authed!(), sel, &tag, matches!(c.body, Close), out)
        }
        Expunge { uids } => expunge::run(in_mailbox!(), &tag, uids.as_ref(), out),
        Copy { set, mailbox, uid } => copy::run(in_mailbox!(), tag, &set, &mailbox, uid, false, out),
        Move { set, mailbox, uid } => copy::run(in_mailbox!(), tag, &set, &mailbox, uid, true, out),
        Fetch { set, items, uid, modifiers } => fetch::run(in_mailbox!(), &tag, &set, &items, uid, &modifiers, out),
        Store { set, op, silent, flags, uid, unchanged_since } => store_flags::run(in_mailbox!(), &tag, &set, op, silent, &flags, uid, unchanged_since, out),
        Search { ret, charset, key, uid } => search::run(in_mailbox!(), &tag, ret.as_deref(), charset.as_deref(), &key, uid, now, out),
        Sort { ret, criteria, charset, key, uid } => sort::run(in_mailbox!(), &tag, ret.as_deref(), &criteria, &charset, &key, uid, now, out),
        Thread { algorithm, charset, key, uid } => thread::run(in_mailbox!(), &tag, algorithm, &charset, &key, uid, now, out),
        CancelUpdate(tags) => cancelupdate::run(in_mailbox!(), &tag, &tags, out),
    }
}
