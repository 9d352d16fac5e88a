//! What earlier runs imported: per target mailbox, the source it came from,
//! the source's UIDVALIDITY, the last source UID stored and the source's
//! HIGHESTMODSEQ then. A re-run fetches only what is newer, and an
//! interrupted run resumes where its last durable batch ended.
//!
//! Kept in `<data dir>/import-state/<user>.json`, written after every batch
//! (to a temporary file, synced, renamed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoxState {
    pub source: String,
    /// The source mailbox's UIDVALIDITY (None: the source has no UIDs).
    pub uidvalidity: Option<u32>,
    /// The last source UID (or mbox position) stored.
    pub last_uid: u32,
    /// The source's HIGHESTMODSEQ when the run that stored it finished.
    pub modseq: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(skip)]
    path: Option<PathBuf>,
    pub mailboxes: BTreeMap<String, BoxState>,
}

impl State {
    /// The state of `user`'s imports (empty if none ran).
    pub fn load(data_dir: &Path, user: &str) -> Result<State, String> {
        let path = data_dir.join("import-state").join(format!("{user}.json"));
        let mut s: State = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{} is damaged ({e}); remove it to import from the start", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        s.path = Some(path);
        Ok(s)
    }

    /// A state that is never saved (--dry-run, tests).
    pub fn unsaved() -> State {
        State::default()
    }

    /// What earlier runs stored in `mailbox` from `source` with this
    /// UIDVALIDITY; None if they imported from elsewhere or nothing.
    pub fn get(&self, mailbox: &str, source: &str, uidvalidity: Option<u32>) -> Option<&BoxState> {
        self.mailboxes.get(mailbox).filter(|b| b.source == source && b.uidvalidity == uidvalidity)
    }

    pub fn set(&mut self, mailbox: &str, s: BoxState) -> Result<(), String> {
        if self.mailboxes.get(mailbox) == Some(&s) {
            return Ok(());
        }
        self.mailboxes.insert(mailbox.to_string(), s);
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).expect("plain data serializes");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&body).and_then(|_| f.sync_data()).map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reload_and_matches_only_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::load(dir.path(), "ann").unwrap();
        s.set("INBOX", BoxState { source: "maildir:/m".into(), uidvalidity: Some(5), last_uid: 9, modseq: None }).unwrap();
        let s = State::load(dir.path(), "ann").unwrap();
        assert_eq!(s.get("INBOX", "maildir:/m", Some(5)).map(|b| b.last_uid), Some(9));
        assert!(s.get("INBOX", "maildir:/m", Some(6)).is_none(), "another UIDVALIDITY is another mailbox");
        assert!(s.get("INBOX", "imap:x@h", Some(5)).is_none());
        std::fs::write(dir.path().join("import-state/ann.json"), "{").unwrap();
        assert!(State::load(dir.path(), "ann").is_err());
    }
}
