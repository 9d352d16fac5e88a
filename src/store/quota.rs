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
//! `UserStore::claim`), so two appends cannot both fit into room for one.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use super::mailbox::{Mailbox, StoreError};
use crate::config::QuotaLimits;

/// Bytes in RFC 9208's units of 1024 octets (5.1), rounded up: a mailbox
/// holding anything never shows 0.
pub fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

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

impl Ledger {
    pub(super) fn limits(&self) -> QuotaLimits {
        self.limits.get()
    }

    pub(super) fn set_limits(&self, limits: QuotaLimits) {
        self.limits.set(limits);
    }

    /// The sum over the user's mailboxes, (id, UIDVALIDITY) each: `live`
    /// totals of an open one, else its remembered totals, else what
    /// `read_closed` finds (then remembered).
    pub(super) fn usage(
        &self,
        boxes: impl Iterator<Item = (u32, u32)>,
        live: impl Fn(u32) -> Option<Usage>,
        read_closed: impl Fn(u32, u32) -> std::io::Result<Usage>,
    ) -> std::io::Result<Usage> {
        let mut total = Usage::default();
        for (id, uidvalidity) in boxes {
            let known = live(id).or_else(|| self.closed.borrow().get(&id).copied());
            let u = match known {
                Some(u) => u,
                None => {
                    let u = read_closed(id, uidvalidity)?;
                    self.closed.borrow_mut().insert(id, u);
                    u
                }
            };
            total = total.plus(u);
        }
        Ok(total)
    }

    /// Claims room for `want` beside what is stored (`stored`, read only
    /// for a user with limits) and claimed, or refuses with
    /// [`StoreError::OverQuota`].
    pub(super) fn claim(&self, want: Usage, stored: impl FnOnce() -> std::io::Result<Usage>) -> Result<Claim, StoreError> {
        let limits = self.limits();
        if !limits.is_unlimited() && !stored()?.plus(self.claimed.get()).plus(want).fits(limits) {
            return Err(StoreError::OverQuota);
        }
        self.claimed.set(self.claimed.get().plus(want));
        Ok(Claim { claimed: self.claimed.clone(), usage: want })
    }
}
