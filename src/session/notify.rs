//! NOTIFY (RFC 5465): what a session asked to be told, and telling it.
//!
//! Two sources feed it. The selected mailbox wakes the session as it does
//! in IDLE, and its changes go out as the usual EXISTS, EXPUNGE (or
//! VANISHED) and FETCH responses, now also between commands. Every other
//! mailbox of the user reaches it through the store's change feed
//! (`store::events`): STATUS for message changes, LIST for names and
//! subscriptions, METADATA for annotations.
//!
//! Responses go out only while no command is in progress (the decoder holds
//! nothing) or in IDLE; what arrives meanwhile waits in the feed's queue.
//! This file is the registration; `cmd/notify.rs` sets it up and sends
//! what it asks for.

use std::rc::Rc;

use crate::proto::{FetchItem, StatusItem};
use crate::store::events::Listener;
use crate::store::{UserStore, DELIMITER};

/// Event kinds, one bit each.
pub(crate) const MESSAGE_NEW: u16 = 1;
pub(crate) const MESSAGE_EXPUNGE: u16 = 2;
pub(crate) const FLAG_CHANGE: u16 = 4;
pub(crate) const MAILBOX_NAME: u16 = 8;
pub(crate) const SUBSCRIPTION_CHANGE: u16 = 16;
pub(crate) const MAILBOX_METADATA: u16 = 32;
pub(crate) const SERVER_METADATA: u16 = 64;
/// The events about messages (only these apply to the selected mailbox).
pub(crate) const MESSAGE_EVENTS: u16 = MESSAGE_NEW | MESSAGE_EXPUNGE | FLAG_CHANGE;

/// Which mailboxes an event group is about (RFC 5465 6), names canonical.
pub(crate) enum Filter {
    /// `personal`, and `inboxes`: mail can be delivered to any mailbox
    /// (`ringmail deliver -m`), so the set of inboxes is every mailbox, as
    /// RFC 5465 6 allows when a server cannot tell them apart.
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

impl Filter {
    fn matches(&self, store: &UserStore, name: &str) -> bool {
        match self {
            Filter::Personal => true,
            Filter::Subscribed => store.is_subscribed(name),
            Filter::Subtree(roots) => roots.iter().any(|r| name.strip_prefix(r.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(DELIMITER))),
            Filter::Mailboxes(names) => names.iter().any(|n| n == name),
        }
    }
}

/// What the selected mailbox's group asked for.
pub(crate) struct SelectedEvents {
    pub events: u16,
    /// `selected-delayed`: expunges wait for a command that allows them.
    pub delayed: bool,
    /// FETCH items sent with each new message (MessageNew's fetch-att).
    pub fetch: Vec<FetchItem>,
}

/// A session's NOTIFY registration.
pub(crate) struct Notify {
    pub selected: Option<SelectedEvents>,
    /// The groups for other mailboxes, with their events.
    pub others: Vec<(Filter, u16)>,
    /// Present while `others` asks for something.
    pub listener: Option<Rc<Listener>>,
    /// New messages of the selected mailbox above this UID still need
    /// their FETCH (set while a push is under way).
    pub fetch_after: Option<u32>,
}

impl Notify {
    /// Whether some group other than the selected one wants `event` for
    /// the mailbox `name`.
    pub fn wants(&self, store: &UserStore, name: &str, event: u16) -> bool {
        self.wanted(store, name) & event != 0
    }

    /// The events some group other than the selected one wants, for the
    /// mailbox `name`.
    pub fn wanted(&self, store: &UserStore, name: &str) -> u16 {
        self.others.iter().filter(|(f, _)| f.matches(store, name)).fold(0, |acc, (_, ev)| acc | ev)
    }

    /// Whether any group asked for `event`.
    pub fn any(&self, event: u16) -> bool {
        self.others.iter().any(|(_, ev)| ev & event != 0)
    }
}

/// Whether the session must be woken by changes to its selected mailbox
/// outside IDLE.
pub(crate) fn watches_selected(n: &Option<Box<Notify>>) -> bool {
    n.as_ref().is_some_and(|n| n.selected.as_ref().is_some_and(|s| s.events != 0))
}

/// The STATUS items that tell of a change: the counts after arrivals or
/// expunges (and UIDVALIDITY, so the client can tell the mailbox is the
/// one it knows); UNSEEN after flag changes; HIGHESTMODSEQ when modseqs
/// are in use.
pub(crate) fn status_items(counts: bool, modseq: bool) -> Vec<StatusItem> {
    let mut v = Vec::with_capacity(5);
    if counts {
        v.extend([StatusItem::Messages, StatusItem::UidNext]);
    }
    v.extend([StatusItem::UidValidity, StatusItem::Unseen]);
    if modseq {
        v.push(StatusItem::HighestModSeq);
    }
    v
}
