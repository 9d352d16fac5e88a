//! METADATA (RFC 5464): a user's annotations on the server and on their
//! mailboxes. They live in the user's manifest (`metadata` lines of
//! docs/store-format.md), keyed by mailbox id, so they become durable with
//! the manifest, go with DELETE (the id goes) and stay across RENAME (the
//! id stays).
//!
//! Entry names arrive checked and lower-cased (RFC 5464 3.2: they are
//! case-insensitive; `proto::parse` refuses malformed ones with BAD).

use std::collections::BTreeMap;

use crate::proto::percent::{decode_bytes, encode_bytes};

/// The owner id of server annotations (mailbox ids start at 1).
pub const SERVER: u32 = 0;

/// The mailbox entry that shows a mailbox's special use (RFC 6154 4); it
/// is the manifest's special-use field, not a stored annotation.
pub const SPECIAL_USE: &str = "/private/specialuse";

pub use crate::proto::MetadataDepth as Depth;

pub use crate::config::MetadataLimits as Limits;

/// Whether a GETMETADATA of `entry` to `depth` returns `name` (RFC 5464
/// 4.2.2: depth 1 adds the children, infinity all descendants).
pub fn reaches(entry: &str, depth: Depth, name: &str) -> bool {
    let Some(below) = name.strip_prefix(entry) else { return false };
    match (below.strip_prefix('/'), depth) {
        _ if below.is_empty() => true,
        (None, _) | (Some(_), Depth::Zero) => false,
        (Some(rest), Depth::One) => !rest.contains('/'),
        (Some(_), Depth::Infinity) => true,
    }
}

/// Why SETMETADATA changed nothing (RFC 5464 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// `[METADATA MAXSIZE n]`: a value is longer than n.
    TooLarge(u64),
    /// `[METADATA TOOMANY]`: the user's entries or bytes would pass their limit.
    TooMany,
    /// The user is moving to another backend.
    Moving,
}

/// Every annotation of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: BTreeMap<(u32, String), Vec<u8>>,
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn total(&self) -> u64 {
        self.entries.iter().map(|((_, k), v)| (k.len() + v.len()) as u64).sum()
    }

    /// `entry` of `owner` and, to `depth`, the entries below it, in name
    /// order.
    pub fn get(&self, owner: u32, entry: &str, depth: Depth) -> Vec<(&str, &[u8])> {
        self.entries
            .range((owner, entry.to_string())..)
            .take_while(|((o, k), _)| *o == owner && k.starts_with(entry))
            .filter(|((_, k), _)| reaches(entry, depth, k))
            .map(|((_, k), v)| (k.as_str(), v.as_slice()))
            .collect()
    }

    /// Sets (Some) or removes (None) each entry of `owner`: all of them, or
    /// none if one value is too large or the user's entries would pass
    /// their limits. Removing is always possible, even over the limits.
    pub fn set(&mut self, owner: u32, changes: &[(String, Option<Vec<u8>>)], limits: Limits) -> Result<(), SetError> {
        if changes.iter().any(|(_, v)| v.as_ref().is_some_and(|v| v.len() as u64 > limits.max_value)) {
            return Err(SetError::TooLarge(limits.max_value));
        }
        // What the entries come to (the last change of an entry wins),
        // reckoned before anything changes.
        let last: BTreeMap<&String, Option<&Vec<u8>>> = changes.iter().map(|(k, v)| (k, v.as_ref())).collect();
        let (count_before, total_before) = (self.entries.len(), self.total());
        let (mut count, mut total) = (count_before, total_before);
        for (&k, v) in &last {
            let size = |v: &Vec<u8>| (k.len() + v.len()) as u64;
            if let Some(old) = self.entries.get(&(owner, k.clone())) {
                count -= 1;
                total -= size(old);
            }
            if let Some(v) = v {
                count += 1;
                total += size(v);
            }
        }
        if (count > count_before && count > limits.max_entries) || (total > total_before && total > limits.max_total) {
            return Err(SetError::TooMany);
        }
        for (k, v) in last {
            match v {
                Some(v) => self.entries.insert((owner, k.clone()), v.clone()),
                None => self.entries.remove(&(owner, k.clone())),
            };
        }
        Ok(())
    }

    /// Forgets every annotation of `owner` (its mailbox is gone).
    pub fn remove_owner(&mut self, owner: u32) {
        self.entries.retain(|(o, _), _| *o != owner);
    }

    /// One `metadata OWNER ENTRY =VALUE` line per entry, escaped to stay
    /// one word each (the `=` keeps an empty value a word).
    pub fn encode(&self, s: &mut String) {
        for ((o, k), v) in &self.entries {
            s.push_str(&format!("metadata {o} {} ={}\n", encode_bytes(k.as_bytes()), encode_bytes(v)));
        }
    }

    /// Reads what follows `metadata ` on one line.
    pub fn decode_line(&mut self, rest: &str) -> Option<()> {
        let mut f = rest.splitn(3, ' ');
        let owner = f.next()?.parse().ok()?;
        let entry = String::from_utf8(decode_bytes(f.next()?)?).ok()?;
        let value = decode_bytes(f.next()?.strip_prefix('=')?)?;
        self.entries.insert((owner, entry), value);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(m: &mut Metadata, owner: u32, k: &str, v: Option<&str>) -> Result<(), SetError> {
        m.set(owner, &[(k.to_string(), v.map(|v| v.as_bytes().to_vec()))], Limits::default())
    }

    fn names(m: &Metadata, owner: u32, entry: &str, depth: Depth) -> Vec<String> {
        m.get(owner, entry, depth).into_iter().map(|(k, _)| k.to_string()).collect()
    }

    #[test]
    fn depth_selects_the_entry_its_children_or_all_below_rfc5464_4_2_2() {
        let mut m = Metadata::default();
        for k in ["/private/a", "/private/a/b", "/private/a/b/c", "/private/a-z", "/private/ab", "/shared/a"] {
            set(&mut m, 3, k, Some("v")).unwrap();
        }
        set(&mut m, 4, "/private/a/x", Some("other mailbox")).unwrap();
        assert_eq!(names(&m, 3, "/private/a", Depth::Zero), ["/private/a"]);
        assert_eq!(names(&m, 3, "/private/a", Depth::One), ["/private/a", "/private/a/b"]);
        assert_eq!(names(&m, 3, "/private/a", Depth::Infinity), ["/private/a", "/private/a/b", "/private/a/b/c"]);
        assert_eq!(names(&m, 3, "/private", Depth::One), ["/private/a", "/private/a-z", "/private/ab"]);
        assert!(names(&m, 3, "/private/nothing", Depth::Infinity).is_empty());
    }

    #[test]
    fn set_is_all_or_nothing_and_removing_works_over_the_limits() {
        let limits = Limits { max_value: 4, max_entries: 2, max_total: 100 };
        let mut m = Metadata::default();
        let kv = |k: &str, v: Option<&str>| (k.to_string(), v.map(|v| v.as_bytes().to_vec()));
        m.set(1, &[kv("/private/a", Some("1")), kv("/private/b", Some("2"))], limits).unwrap();
        assert_eq!(m.set(1, &[kv("/private/a", None), kv("/private/c", Some("12345"))], limits), Err(SetError::TooLarge(4)));
        assert_eq!(m.set(2, &[kv("/private/c", Some("3"))], limits), Err(SetError::TooMany));
        assert_eq!(names(&m, 1, "/private", Depth::One), ["/private/a", "/private/b"]);
        // Replacing a value keeps the count; removing is allowed at the limit.
        m.set(1, &[kv("/private/a", Some("9"))], limits).unwrap();
        let tight = Limits { max_entries: 1, max_total: 1, ..limits };
        m.set(1, &[kv("/private/b", None)], tight).unwrap();
        assert_eq!(m.get(1, "/private/a", Depth::Zero), [("/private/a", &b"9"[..])]);
    }

    #[test]
    fn lines_round_trip_any_bytes() {
        let mut m = Metadata::default();
        m.set(0, &[("/private/x y".into(), Some(b"a b%\r\n\0\xff".to_vec())), ("/shared/empty".into(), Some(Vec::new()))], Limits::default()).unwrap();
        set(&mut m, 7, "/shared/comment", Some("caf\u{e9}")).unwrap();
        let mut s = String::new();
        m.encode(&mut s);
        let mut back = Metadata::default();
        for line in s.lines() {
            back.decode_line(line.strip_prefix("metadata ").unwrap()).unwrap();
        }
        assert_eq!(back, m);
        m.remove_owner(7);
        assert!(m.get(7, "/shared/comment", Depth::Zero).is_empty());
    }
}
