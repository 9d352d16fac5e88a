//! Quota (RFC 9208) on the store's side: what a user's mailboxes hold, what
//! appends in progress have claimed, and the check that both stay within
//! the user's limits.
//!
//! Usage has no record of its own that could drift from the mail: it is
//! the sum of each mailbox's message count and bytes, which the mailbox
//! keeps exactly (recovery recounts them from the index and log after a
//! crash; compaction moves records without changing either). A mailbox
//! that is not open is opened once to read its totals, which are kept
//! while it stays closed: only an open mailbox can change. So the first
//! check after a user's store is opened reads each mailbox once, as
//! Dovecot's `count` backend does from its indexes, and every later one
//! adds up a number per mailbox.
//!
//! Atomic on one worker: all of a user's sessions and deliveries run on
//! one thread, and an append claims its size before streaming it (see
//! [`UserStore::claim`]), so two appends cannot both fit into room for one.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use super::mailbox::{Mailbox, StoreError};
use super::UserStore;
use crate::config::QuotaLimits;

/// What counts against a quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages: u64,
    /// The sum of the messages' RFC822.SIZE.
    pub bytes: u64,
}

impl Usage {
    fn plus(self, o: Usage) -> Usage {
        Usage { messages: self.messages + o.messages, bytes: self.bytes + o.bytes }
    }

    fn minus(self, o: Usage) -> Usage {
        Usage { messages: self.messages.saturating_sub(o.messages), bytes: self.bytes.saturating_sub(o.bytes) }
    }

    /// Whether this is within `limits`.
    pub fn fits(&self, limits: QuotaLimits) -> bool {
        limits.storage.is_none_or(|l| self.bytes <= l) && limits.messages.is_none_or(|l| self.messages <= l)
    }
}

/// A user's quota state, held by their [`UserStore`].
#[derive(Default)]
pub(super) struct Ledger {
    limits: Cell<QuotaLimits>,
    /// Claimed by appends still being written.
    claimed: Rc<Cell<Usage>>,
    /// Totals of mailboxes (by id) read while they were closed.
    closed: std::cell::RefCell<HashMap<u32, Usage>>,
}

impl Ledger {
    /// A mailbox is open now (its totals are read live).
    pub(super) fn opened(&self, id: u32) {
        self.closed.borrow_mut().remove(&id);
    }
}

/// Room claimed for messages being appended; given back when dropped (by
/// then the messages, if stored, count in their mailbox's totals).
#[must_use]
pub struct Claim {
    claimed: Rc<Cell<Usage>>,
    usage: Usage,
}

impl Claim {
    /// A claim of nothing (a placeholder).
    pub fn nothing() -> Claim {
        Claim { claimed: Rc::default(), usage: Usage::default() }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claimed.set(self.claimed.get().minus(self.usage));
    }
}

impl Mailbox {
    /// Messages and bytes this mailbox holds for quota: visible ones and
    /// those appended but not yet committed.
    pub fn quota_usage(&self) -> Usage {
        let (messages, bytes) = self.staged_totals();
        Usage { messages: self.exists() as u64 + messages, bytes: self.size() + bytes }
    }
}

impl UserStore {
    pub fn quota_limits(&self) -> QuotaLimits {
        self.ledger.limits.get()
    }

    /// Sets the user's limits (from the user database, on every open).
    pub fn set_quota_limits(&self, limits: QuotaLimits) {
        self.ledger.limits.set(limits);
    }

    /// What the user's mailboxes hold now.
    pub fn quota_usage(&self) -> std::io::Result<Usage> {
        let entries: Vec<(u32, u32)> = self.manifest.get().entries.iter().filter(|e| !e.noselect).map(|e| (e.id, e.uidvalidity)).collect();
        let mut total = Usage::default();
        for (id, uidvalidity) in entries {
            if let Some(mb) = self.open.borrow().get(&id) {
                total = total.plus(mb.borrow().quota_usage());
                continue;
            }
            if let Some(u) = self.ledger.closed.borrow().get(&id) {
                total = total.plus(*u);
                continue;
            }
            let dir = self.box_dir(id);
            let u = if self.io.exists(&dir) { Mailbox::open(self.io.clone(), &dir, uidvalidity, self.settings)?.quota_usage() } else { Usage::default() };
            self.ledger.closed.borrow_mut().insert(id, u);
            total = total.plus(u);
        }
        Ok(total)
    }

    /// Claims room for `messages` more messages of `bytes` in all, or
    /// refuses with [`StoreError::OverQuota`] if they would not fit beside
    /// what is stored and claimed. Nothing is read for a user without limits.
    pub fn claim(&self, messages: u64, bytes: u64) -> Result<Claim, StoreError> {
        let want = Usage { messages, bytes };
        let limits = self.quota_limits();
        if !limits.is_unlimited() {
            let held = self.quota_usage()?.plus(self.ledger.claimed.get());
            if !held.plus(want).fits(limits) {
                return Err(StoreError::OverQuota);
            }
        }
        let claimed = self.ledger.claimed.clone();
        claimed.set(claimed.get().plus(want));
        Ok(Claim { claimed, usage: want })
    }
}
