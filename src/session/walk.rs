//! Walking the messages of a sequence set in slices, as FETCH, STORE,
//! COPY and MOVE do: a UID command first catches up with the mailbox
//! (RFC 9051 7.5.1), then the set is resolved once, lazily, against the
//! mailbox as the session numbers it.

use super::reply::{bad, catch_up};
use super::selected::Selection;
use super::state::{InMailbox, Progress};
use crate::proto::{Out, SequenceSet};

pub(crate) struct SetWalk {
    set: SequenceSet,
    uid: bool,
    catching_up: bool,
    selection: Option<Selection>,
}

impl SetWalk {
    pub fn new(set: &SequenceSet, uid: bool) -> SetWalk {
        SetWalk { set: set.clone(), uid, catching_up: uid, selection: None }
    }

    /// At the start of every slice. Ok(Some(messages)) when the set was
    /// resolved just now (the first slice that gets this far), to look at
    /// before walking; Err: what the slice returns instead (a slice of the
    /// catch-up, the end of the session, or BAD for a set that names no
    /// message).
    pub fn ready(&mut self, m: &mut InMailbox<'_>, out: &mut Out, tag: &str) -> Result<Option<&Selection>, Progress> {
        if let Some(p) = catch_up(m, out, &mut self.catching_up) {
            return Err(p);
        }
        if self.selection.is_some() {
            return Ok(None);
        }
        match m.sel.select(&self.set, self.uid) {
            Some(list) => Ok(Some(self.selection.insert(list))),
            None => Err(Progress::Done(bad(out, tag, "Invalid messageset"))),
        }
    }

    /// Walks only the messages of the resolved set whose UIDs are in
    /// `only` (ascending).
    pub fn narrow(&mut self, only: &[u32]) {
        if let Some(s) = &self.selection {
            self.selection = Some(s.narrowed(only));
        }
    }

    /// The next (sequence number, UID) to handle.
    pub fn next(&mut self) -> Option<(u32, u32)> {
        self.selection.as_mut()?.next()
    }
}
