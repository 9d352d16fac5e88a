//! What changed in one user's mail store, told to the sessions that asked
//! (NOTIFY, RFC 5465). All of a user's mailboxes live on one worker, so
//! this is a local broadcast: each listening session has a small queue of
//! changes and the signal that wakes its connection; it turns them into
//! STATUS, LIST and METADATA responses when it may send them.
//!
//! Nothing is queued while nobody listens, and message changes to one
//! mailbox fold into one queued change, so a burst of deliveries costs a
//! listener one entry per mailbox.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::signal::Signal;

/// Messages arrived ([`Change::Messages`]).
pub const NEW: u8 = 1;
/// Messages were expunged.
pub const EXPUNGE: u8 = 2;
/// Flags or keywords changed.
pub const FLAGS: u8 = 4;

/// Changes a listener holds before it overflows (RFC 5465 5.8: the
/// session then says NOTIFICATIONOVERFLOW and stops listening).
pub const QUEUE_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Messages of the mailbox with this id: `what` is NEW, EXPUNGE and
    /// FLAGS or'ed together.
    Messages {
        mailbox: u32,
        what: u8,
    },
    Created(String),
    Deleted(String),
    Renamed {
        from: String,
        to: String,
    },
    /// Subscribed (true) or unsubscribed.
    Subscription(String, bool),
    /// Annotations (RFC 5464) of the mailbox with this id, or of the
    /// server (`metadata::SERVER`), changed.
    Metadata {
        owner: u32,
        entries: Vec<String>,
    },
}

/// One session's queue.
#[derive(Default)]
struct Queue {
    changes: Vec<Change>,
    overflow: bool,
}

pub struct Listener {
    queue: RefCell<Queue>,
    signal: Rc<Signal>,
}

impl Listener {
    /// The changes since the last call, and whether some were dropped
    /// because the queue was full.
    pub fn take(&self) -> (Vec<Change>, bool) {
        let q = std::mem::take(&mut *self.queue.borrow_mut());
        (q.changes, q.overflow)
    }

    fn push(&self, c: &Change) {
        let mut q = self.queue.borrow_mut();
        if q.overflow {
            return;
        }
        if let Change::Messages { mailbox, what } = c {
            let same = q.changes.iter_mut().rev().find_map(|x| match x {
                Change::Messages { mailbox: m, what: w } if m == mailbox => Some(w),
                _ => None,
            });
            if let Some(w) = same {
                *w |= what;
                drop(q);
                self.signal.fire();
                return;
            }
        }
        if q.changes.len() >= QUEUE_MAX {
            q.overflow = true;
            q.changes = Vec::new();
        } else {
            q.changes.push(c.clone());
        }
        drop(q);
        self.signal.fire();
    }
}

/// A user's listeners.
#[derive(Default)]
pub struct Feed {
    listeners: RefCell<Vec<Weak<Listener>>>,
}

impl Feed {
    /// A new listener woken through `signal`; it listens until dropped.
    pub fn listen(&self, signal: Rc<Signal>) -> Rc<Listener> {
        let l = Rc::new(Listener { queue: RefCell::default(), signal });
        let mut v = self.listeners.borrow_mut();
        v.retain(|x| x.strong_count() > 0);
        v.push(Rc::downgrade(&l));
        l
    }

    /// Tells every listener; `change` is made only if there is one.
    pub fn post(&self, change: impl FnOnce() -> Change) {
        let mut v = self.listeners.borrow_mut();
        v.retain(|x| x.strong_count() > 0);
        if v.is_empty() {
            return;
        }
        let c = change();
        for l in v.iter().filter_map(Weak::upgrade) {
            l.push(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_changes_to_one_mailbox_fold_into_one_entry() {
        let feed = Feed::default();
        let signal = Signal::new();
        let l = feed.listen(signal.clone());
        feed.post(|| Change::Messages { mailbox: 3, what: NEW });
        feed.post(|| Change::Created("a".into()));
        feed.post(|| Change::Messages { mailbox: 3, what: FLAGS });
        assert!(signal.take());
        let (changes, overflow) = l.take();
        assert!(!overflow);
        assert_eq!(changes, vec![Change::Messages { mailbox: 3, what: NEW | FLAGS }, Change::Created("a".into())]);
        assert_eq!(l.take(), (Vec::new(), false));
    }

    #[test]
    fn a_full_queue_overflows_and_a_dropped_listener_is_forgotten() {
        let feed = Feed::default();
        let l = feed.listen(Signal::new());
        for i in 0..=QUEUE_MAX {
            feed.post(|| Change::Created(i.to_string()));
        }
        let (changes, overflow) = l.take();
        assert!(overflow && changes.is_empty());
        drop(l);
        feed.post(|| unreachable!("nobody listens"));
    }
}
