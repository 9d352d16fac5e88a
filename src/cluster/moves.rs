//! Users moved between backends by `ringmail user move`: user name to the
//! backend that serves them now, with the version (milliseconds since the
//! epoch when the move was committed) that orders moves of one user.
//!
//! Every backend keeps the table it knows in `<data dir>/cluster-moves.json`
//! and takes newer entries from the others (they ask each other every few
//! seconds), so a backend that was down or missed the move's last step
//! learns it when it is back. A move overrides the map's `[overrides]` and
//! the hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file in each backend's data directory that keeps the moves it knows.
pub const FILE: &str = "cluster-moves.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub backend: String,
    pub version: u64,
    /// The move's id: the new home serves the copy sealed for it alone.
    #[serde(default)]
    pub id: u64,
}

impl Moved {
    /// Whether `self` is the later of two moves of one user (equal versions,
    /// which two moves committed in one millisecond could share, are
    /// ordered by backend name so that every backend picks the same).
    fn supersedes(&self, other: &Moved) -> bool {
        (self.version, &self.backend) > (other.version, &other.backend)
    }
}

/// User (lower case) to where they were moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moves {
    users: BTreeMap<String, Moved>,
}

impl Moves {
    pub fn get(&self, user: &str) -> Option<&Moved> {
        self.users.get(&user.to_ascii_lowercase())
    }

    /// Whether `moved` is later than what is known of `user`.
    pub fn is_news(&self, user: &str, moved: &Moved) -> bool {
        self.get(user).is_none_or(|known| moved.supersedes(known))
    }

    /// Takes `moved` for `user` if it is later than what is known; true if
    /// it was.
    pub fn merge(&mut self, user: &str, moved: Moved) -> bool {
        if !self.is_news(user, &moved) {
            return false;
        }
        self.users.insert(user.to_ascii_lowercase(), moved);
        true
    }

    /// Takes every later entry of `other`; answers the users that changed.
    pub fn merge_all(&mut self, other: &Moves) -> Vec<String> {
        other.users.iter().filter(|(u, m)| self.merge(u, (*m).clone())).map(|(u, _)| u.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Moved)> {
        self.users.iter()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn parse(text: &str) -> Result<Moves, String> {
        serde_json::from_str(text).map_err(|e| format!("moved users: {e}"))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string_pretty(self).expect("a map of strings encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(backend: &str, version: u64) -> Moved {
        Moved { backend: backend.into(), version, id: version }
    }

    #[test]
    fn the_latest_move_wins_in_any_order_of_hearing() {
        let moves = [("Alice", m("b2", 10)), ("alice", m("b3", 20)), ("bob", m("b1", 5)), ("alice", m("b1", 15)), ("bob", m("b3", 5))];
        let mut first = Moves::default();
        for (u, x) in moves.iter().cloned() {
            first.merge(u, x);
        }
        let mut second = Moves::default();
        for (u, x) in moves.iter().rev().cloned() {
            second.merge(u, x);
        }
        assert_eq!(first, second, "every backend ends with the same table");
        assert_eq!(first.get("ALICE"), Some(&m("b3", 20)));
        assert_eq!(first.get("bob"), Some(&m("b3", 5)), "a tie is broken by the backend's name");
        assert!(!first.merge("alice", m("b2", 19)), "an older move changes nothing");
        let mut behind = Moves::default();
        behind.merge("alice", m("b2", 10));
        assert_eq!(behind.merge_all(&first), vec!["alice".to_string(), "bob".to_string()]);
        assert_eq!(behind, first);
        assert_eq!(Moves::parse(&first.encode()).unwrap(), first);
        assert!(Moves::parse("{").is_err());
    }
}
