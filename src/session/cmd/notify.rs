//! NOTIFY (RFC 5465 3.1): NOTIFY NONE, and NOTIFY SET [STATUS] with event
//! groups. What the session then hears is `session::notify`.

use std::rc::Rc;

use super::fetch;
use crate::proto::{EventGroup, FetchItem, NotifyEvent, NotifyFilter, NotifySet, Out};
use crate::session::notify::{self, Filter, Notify, SelectedEvents};
use crate::session::notify::{FLAG_CHANGE, MAILBOX_METADATA, MAILBOX_NAME, MESSAGE_EVENTS, MESSAGE_EXPUNGE, MESSAGE_NEW, SERVER_METADATA, SUBSCRIPTION_CHANGE};
use crate::session::reply::{bad, no, ok, sync_step};
use crate::session::selected::Synced;
use crate::session::state::{Cx, Directive, Session, State, User, Wait, OUTPUT_BUDGET};
use crate::store::events::{self, Change};
use crate::store::manifest::canonical;
use crate::store::{metadata, MailboxRef};

/// The events this server tells of (RFC 5465 3.1: listed in BADEVENT).
const SUPPORTED: &str = "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange)";

/// Mailbox names a registration may list, all groups together; more is
/// refused with NOTIFICATIONOVERFLOW (RFC 5465 3.1 lets a server refuse
/// what it will not track).
const NAMES_MAX: usize = 1000;

pub fn run(s: &mut Session, tag: &str, set: Option<NotifySet>, out: &mut Out) -> Directive {
    let Some(set) = set else {
        turn_off(s);
        return ok(tag, None, "NOTIFY completed.");
    };
    let mut n = match registration(&s.cx, &set.groups) {
        Ok(n) => n,
        Err(Refusal::Bad(text)) => return bad(out, tag, &text),
        Err(Refusal::No(code, text)) => return no(out, tag, Some(code), text),
    };
    turn_off(s);
    let selected = s.in_mailbox().map(|m| m.sel.mbox.clone());
    if let Some(a) = s.authed() {
        if set.status {
            initial_status(&n, a.user, a.cx.utf8_names(), a.cx.enabled.condstore, selected, out);
        }
        if let (false, Some(signal)) = (n.others.is_empty(), a.cx.signal.clone()) {
            n.listener = Some(a.user.store.listen(signal));
        }
    }
    s.cx.notify = Some(Box::new(n));
    if notify::watches_selected(&s.cx.notify) {
        if let Some(m) = s.in_mailbox() {
            m.sel.watch(true);
        }
    }
    ok(tag, None, "NOTIFY completed.")
}

enum Refusal {
    Bad(String),
    No(&'static str, &'static str),
}

/// The event groups checked and turned into a registration.
fn registration(cx: &Cx, groups: &[EventGroup]) -> Result<Notify, Refusal> {
    let mut n = Notify { selected: None, others: Vec::new(), listener: None, fetch_after: None };
    let mut names = 0;
    for g in groups {
        let mut events = 0;
        let mut fetch = Vec::new();
        for e in &g.events {
            events |= match e {
                NotifyEvent::MessageNew(items) => {
                    fetch.extend(items.iter().cloned());
                    MESSAGE_NEW
                }
                NotifyEvent::MessageExpunge => MESSAGE_EXPUNGE,
                NotifyEvent::FlagChange => FLAG_CHANGE,
                NotifyEvent::MailboxName => MAILBOX_NAME,
                NotifyEvent::SubscriptionChange => SUBSCRIPTION_CHANGE,
                NotifyEvent::MailboxMetadataChange => MAILBOX_METADATA,
                NotifyEvent::ServerMetadataChange => SERVER_METADATA,
                // Per-message annotations (RFC 5257) are not kept.
                NotifyEvent::AnnotationChange | NotifyEvent::Other(_) => return Err(Refusal::No(SUPPORTED, "Unsupported NOTIFY event")),
            };
        }
        // RFC 5465 5 asks clients to name MessageNew and MessageExpunge
        // together, and FlagChange only with both; one of them alone is
        // taken as asked (as Dovecot 2.3 does), and told of alone.
        let filter = match &g.filter {
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed => {
                if n.selected.is_some() {
                    return Err(Refusal::Bad("Only one selected or selected-delayed group".into()));
                }
                if events & !MESSAGE_EVENTS != 0 {
                    return Err(Refusal::Bad("The selected mailbox takes only message events".into()));
                }
                n.selected = Some(SelectedEvents { events, delayed: g.filter == NotifyFilter::SelectedDelayed, fetch });
                continue;
            }
            NotifyFilter::Inboxes | NotifyFilter::Personal => Filter::Personal,
            NotifyFilter::Subscribed => Filter::Subscribed,
            NotifyFilter::Subtree(boxes) | NotifyFilter::Mailboxes(boxes) => {
                names += boxes.len();
                if names > NAMES_MAX {
                    return Err(Refusal::No("NOTIFICATIONOVERFLOW", "Too many mailbox names"));
                }
                let mut v = Vec::with_capacity(boxes.len());
                for b in boxes {
                    let name = cx.mailbox_name(b).map_err(|e| Refusal::Bad(e.to_string()))?;
                    v.push(canonical(&name).map_err(|_| Refusal::Bad(format!("Invalid mailbox name {name}")))?);
                }
                if matches!(g.filter, NotifyFilter::Subtree(_)) {
                    Filter::Subtree(v)
                } else {
                    Filter::Mailboxes(v)
                }
            }
        };
        if !fetch.is_empty() {
            return Err(Refusal::Bad("MessageNew takes FETCH items only for the selected mailbox".into()));
        }
        if events != 0 {
            n.others.push((filter, events));
        }
    }
    Ok(n)
}

/// `NOTIFY SET STATUS` (RFC 5465 3.1): the STATUS of every mailbox a group
/// asks message events for, but the selected one, before the tagged OK.
fn initial_status(n: &Notify, user: &User, utf8: bool, condstore: bool, selected: Option<MailboxRef>, out: &mut Out) {
    let store = &user.store;
    let items = notify::status_items(true, condstore || n.any(FLAG_CHANGE));
    for e in store.entries() {
        if e.noselect || n.wanted(store, &e.name) & MESSAGE_EVENTS == 0 {
            continue;
        }
        let Ok(mb) = store.mailbox(&e.name) else { continue };
        if selected.as_ref().is_some_and(|s| Rc::ptr_eq(s, &mb)) {
            continue;
        }
        super::status::status_line(out, store, &e.name, &mb, &items, utf8);
    }
}

/// Sends what is due; true if more follows (flush and call again).
/// `idling`: the session is in IDLE, which reports every change of the
/// selected mailbox whatever NOTIFY asked.
pub(crate) fn push(s: &mut Session, idling: bool, out: &mut Out) -> bool {
    if push_selected(s, idling, out) {
        return true;
    }
    push_others(s, out);
    false
}

fn push_selected(s: &mut Session, idling: bool, out: &mut Out) -> bool {
    let Some(m) = s.in_mailbox() else { return false };
    let Some(n) = m.cx.notify.as_mut() else {
        // Plain IDLE.
        return idling && sync_step(m.cx, m.sel, out, true) == Synced::More;
    };
    let (expunge_ok, fetch) = match &n.selected {
        Some(sel) if sel.events != 0 => {
            let (set_changed, flags_changed) = m.sel.news();
            let due = n.fetch_after.is_some()
                || idling
                || (set_changed && sel.events & (MESSAGE_NEW | MESSAGE_EXPUNGE) != 0)
                || (flags_changed && sel.events & FLAG_CHANGE != 0);
            if !due {
                return false;
            }
            (idling || (sel.events & MESSAGE_EXPUNGE != 0 && !sel.delayed), !sel.fetch.is_empty())
        }
        _ if idling => (true, false),
        _ => return false,
    };
    if fetch && n.fetch_after.is_none() {
        n.fetch_after = Some(m.sel.uids().last().unwrap_or(0));
    }
    match sync_step(m.cx, m.sel, out, expunge_ok) {
        Synced::More => return true,
        Synced::Deleted => return false,
        Synced::Done => {}
    }
    let (rev2, qresync) = (m.cx.enabled.rev2, m.cx.enabled.qresync);
    let Some(n) = m.cx.notify.as_mut() else { return false };
    let Some(after) = n.fetch_after.take() else { return false };
    let Some(sel_events) = &n.selected else { return false };
    let uids = m.sel.uids();
    let new: Vec<u32> = uids.iter_from(uids.partition_point(|u| u <= after)).collect();
    let items = with_uid(&sel_events.fetch, qresync);
    for u in new {
        if out.len() >= OUTPUT_BUDGET {
            n.fetch_after = Some(u - 1);
            return true;
        }
        fetch::unsolicited(m.sel, u, &items, rev2, out);
    }
    false
}

/// The items of MessageNew's FETCH, with UID first when QRESYNC is on
/// (RFC 7162 3.2.4).
fn with_uid(items: &[FetchItem], qresync: bool) -> Vec<FetchItem> {
    let mut v = items.to_vec();
    if qresync && !v.contains(&FetchItem::Uid) {
        v.insert(0, FetchItem::Uid);
    }
    v
}

/// The changes to other mailboxes, as RFC 5465 5 has them told.
fn push_others(s: &mut Session, out: &mut Out) {
    let (changes, overflow) = match s.cx.notify.as_ref().and_then(|n| n.listener.as_ref()) {
        Some(l) => l.take(),
        None => return,
    };
    if overflow {
        // RFC 5465 5.8: too much to tell; NOTIFY is off from here on.
        out.untagged_status("OK", Some("NOTIFICATIONOVERFLOW"), "Too many changes at once; NOTIFY is off");
        turn_off(s);
        return;
    }
    let selected = match &s.state {
        State::Selected(_, sel) => Some(sel.mbox.clone()),
        _ => None,
    };
    let Some(a) = s.authed() else { return };
    let Some(n) = a.cx.notify.as_ref() else { return };
    let store = &a.user.store;
    let utf8 = a.cx.utf8_names();
    let condstore = a.cx.enabled.condstore;
    for c in changes {
        match c {
            Change::Messages { mailbox, what } => {
                let Some(name) = store.name_of(mailbox) else { continue };
                let Ok(mb) = store.mailbox(&name) else { continue };
                // The selected mailbox is told of through its own group.
                if selected.as_ref().is_some_and(|x| Rc::ptr_eq(x, &mb)) {
                    continue;
                }
                let wanted = n.wanted(store, &name);
                let counts = what & (events::NEW | events::EXPUNGE) != 0 && wanted & (MESSAGE_NEW | MESSAGE_EXPUNGE) != 0;
                let flags = what & events::FLAGS != 0 && wanted & FLAG_CHANGE != 0;
                if counts || flags {
                    let items = notify::status_items(counts, condstore || n.any(FLAG_CHANGE));
                    super::status::status_line(out, store, &name, &mb, &items, utf8);
                }
            }
            Change::Created(name) | Change::Deleted(name) => {
                if n.wants(store, &name, MAILBOX_NAME) {
                    super::list::changed_line(out, store, &name, None, utf8);
                }
            }
            Change::Renamed { from, to } => {
                if n.wants(store, &to, MAILBOX_NAME) || n.wants(store, &from, MAILBOX_NAME) {
                    super::list::changed_line(out, store, &to, Some(&from), utf8);
                }
            }
            Change::Subscription(name, _) => {
                if n.wants(store, &name, SUBSCRIPTION_CHANGE) {
                    super::list::changed_line(out, store, &name, None, utf8);
                }
            }
            Change::Metadata { owner, entries } => {
                let name = if owner == metadata::SERVER {
                    if !n.any(SERVER_METADATA) {
                        continue;
                    }
                    String::new()
                } else {
                    match store.name_of(owner) {
                        Some(name) if n.wants(store, &name, MAILBOX_METADATA) => name,
                        _ => continue,
                    }
                };
                // RFC 5464 4.4.2: the entries' names, without values.
                out.raw(b"* METADATA ").mailbox(&name, utf8);
                for e in &entries {
                    out.sp().astring(e.as_bytes(), false);
                }
                out.crlf();
            }
        }
    }
}

/// NOTIFY NONE, or an overflow: no more notifications, and the selected
/// mailbox wakes the session only in IDLE again.
pub(crate) fn turn_off(s: &mut Session) {
    let was = notify::watches_selected(&s.cx.notify) && !matches!(s.cx.wait, Wait::Idle { .. });
    s.cx.notify = None;
    if let (true, Some(m)) = (was, s.in_mailbox()) {
        m.sel.watch(false);
    }
}
