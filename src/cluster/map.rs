//! The cluster map: the backends, and which one is a user's home.
//!
//! ```toml
//! [[backend]]
//! name = "b1"
//! imap = "10.0.0.11:143"
//! lmtp = "10.0.0.11:24"
//! weight = 1.0          # optional; a backend with weight 2 gets twice the users
//!
//! control = "10.0.0.11:4190"   # optional; `ringmail user move` copies through it
//!
//! [overrides]           # users moved off their hashed home
//! alice = "b2"
//! ```
//!
//! Moves made by `ringmail user move` ([`super::moves::Moves`]) come before both.
//!
//! A user's home is chosen by weighted rendezvous (highest random weight)
//! hashing of the user name: every backend scores the name, the highest
//! score wins. Adding or removing a backend moves only the users it wins or
//! held (about 1/n of them), and every host computing it agrees without
//! talking to the others. The hash is XXH3-64, which is stable across
//! releases and platforms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    /// Where its IMAP listens (for nginx: an IP address, not a name).
    pub imap: SocketAddr,
    pub lmtp: SocketAddr,
    pub weight: f64,
    /// Its control port (users' files move through it).
    pub control: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMap {
    backends: Vec<Backend>,
    /// User name (lower case) to backend index.
    overrides: HashMap<String, usize>,
    /// Users moved by `ringmail user move`, to backend index.
    moved: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEntry {
    name: String,
    imap: SocketAddr,
    lmtp: SocketAddr,
    #[serde(default = "one")]
    weight: f64,
    control: Option<SocketAddr>,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    backend: Vec<BackendEntry>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

impl ClusterMap {
    pub fn parse(text: &str) -> Result<ClusterMap, String> {
        let f: MapFile = toml::from_str(text).map_err(|e| format!("cluster map: {e}"))?;
        if f.backend.is_empty() {
            return Err("cluster map: no [[backend]]".into());
        }
        let mut backends: Vec<Backend> = Vec::with_capacity(f.backend.len());
        for b in f.backend {
            if backends.iter().any(|x| x.name == b.name) {
                return Err(format!("cluster map: backend {:?} is listed twice", b.name));
            }
            if !(b.weight.is_finite() && b.weight > 0.0) {
                return Err(format!("cluster map: backend {:?} needs a weight above 0", b.name));
            }
            backends.push(Backend { name: b.name, imap: b.imap, lmtp: b.lmtp, weight: b.weight, control: b.control });
        }
        let mut overrides = HashMap::with_capacity(f.overrides.len());
        for (user, to) in f.overrides {
            let i = backends.iter().position(|b| b.name == to).ok_or_else(|| format!("cluster map: {user} is moved to {to:?}, which is not a backend"))?;
            overrides.insert(user.to_ascii_lowercase(), i);
        }
        Ok(ClusterMap { backends, overrides, moved: HashMap::new() })
    }

    /// Takes the moves made by `ringmail user move` (a move to a backend the
    /// map does not list is ignored, with a warning).
    pub fn set_moves(&mut self, moves: &super::moves::Moves) {
        self.moved = moves
            .iter()
            .filter_map(|(user, m)| match self.backends.iter().position(|b| b.name == m.backend) {
                Some(i) => Some((user.clone(), i)),
                None => {
                    tracing::warn!(user, backend = m.backend, "a user was moved to a backend the cluster map does not list; ignored");
                    None
                }
            })
            .collect();
    }

    pub fn load(path: &Path) -> Result<ClusterMap, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the cluster map {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// This server's name in the map: `configured`, or else the one backend
    /// whose IMAP address is one of `own` (a wildcard listener matches any
    /// address on its port).
    pub fn find_self(&self, configured: Option<&str>, own: &[SocketAddr]) -> Result<String, String> {
        if let Some(name) = configured {
            return self.backend(name).map(|b| b.name.clone()).ok_or_else(|| format!("[cluster] self = {name:?} is not in the cluster map"));
        }
        let mine = |b: &&Backend| own.iter().any(|a| a.port() == b.imap.port() && (a.ip() == b.imap.ip() || a.ip().is_unspecified()));
        let found: Vec<&Backend> = self.backends.iter().filter(mine).collect();
        match found.as_slice() {
            [b] => Ok(b.name.clone()),
            [] => Err("no backend of the cluster map has an IMAP address this server listens on; set [cluster] self".into()),
            _ => Err("several backends of the cluster map match this server's IMAP addresses; set [cluster] self".into()),
        }
    }

    /// The backend that serves `user`: an override, else the hash's choice.
    pub fn home(&self, user: &str) -> &Backend {
        let user = user.to_ascii_lowercase();
        match self.moved.get(&user).or_else(|| self.overrides.get(&user)) {
            Some(&i) => &self.backends[i],
            None => &self.backends[self.hashed(&user)],
        }
    }

    /// Whether `user` was moved off the backend the hash gives.
    pub fn is_overridden(&self, user: &str) -> bool {
        let user = user.to_ascii_lowercase();
        self.overrides.contains_key(&user) || self.moved.contains_key(&user)
    }

    /// Weighted rendezvous: score = -weight / ln(h), h the name's hash
    /// under this backend mapped into (0, 1).
    fn hashed(&self, user: &str) -> usize {
        let mut best = (f64::NEG_INFINITY, 0);
        for (i, b) in self.backends.iter().enumerate() {
            let mut key = Vec::with_capacity(b.name.len() + 1 + user.len());
            key.extend_from_slice(b.name.as_bytes());
            key.push(0);
            key.extend_from_slice(user.as_bytes());
            let h = xxhash_rust::xxh3::xxh3_64(&key);
            let unit = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -b.weight / unit.ln();
            if score > best.0 {
                best = (score, i);
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(backends: &[(&str, f64)], overrides: &str) -> ClusterMap {
        let mut t = String::new();
        for (i, (n, w)) in backends.iter().enumerate() {
            t.push_str(&format!("[[backend]]\nname = \"{n}\"\nimap = \"10.0.0.{i}:143\"\nlmtp = \"10.0.0.{i}:24\"\nweight = {w}\n"));
        }
        t.push_str(overrides);
        ClusterMap::parse(&t).unwrap()
    }

    #[test]
    fn users_spread_by_weight_and_a_new_backend_takes_only_its_share() {
        let three = map(&[("b1", 1.0), ("b2", 1.0), ("b3", 2.0)], "");
        let users: Vec<String> = (0..20_000).map(|i| format!("user{i}@example.com")).collect();
        let count = |m: &ClusterMap, name: &str| users.iter().filter(|u| m.home(u).name == name).count();
        let (b1, b3) = (count(&three, "b1"), count(&three, "b3"));
        assert!((4500..5500).contains(&b1), "b1 {b1}");
        assert!((9500..10500).contains(&b3), "b3 has weight 2: {b3}");
        let four = map(&[("b1", 1.0), ("b2", 1.0), ("b3", 2.0), ("b4", 1.0)], "");
        let moved = users.iter().filter(|u| three.home(u).name != four.home(u).name).collect::<Vec<_>>();
        assert!(moved.iter().all(|u| four.home(u).name == "b4"), "only to the new backend");
        assert!((3500..4500).contains(&moved.len()), "about a fifth moves: {}", moved.len());
        // The same answer every time, on every host: no state, no randomness.
        assert_eq!(three.home("Alice").name, three.home("alice").name);
        assert_eq!(map(&[("b1", 1.0), ("b2", 1.0), ("b3", 2.0)], "").home("alice"), three.home("alice"));
    }

    #[test]
    fn this_backend_is_found_by_its_listening_address() {
        let map = map(&[("b1", 1.0), ("b2", 1.0)], "");
        assert_eq!(map.find_self(None, &["10.0.0.1:143".parse().unwrap()]).unwrap(), "b2");
        assert!(map.find_self(None, &["0.0.0.0:143".parse().unwrap()]).is_err(), "ambiguous");
        assert_eq!(map.find_self(Some("b1"), &["0.0.0.0:143".parse().unwrap()]).unwrap(), "b1");
        assert!(map.find_self(Some("b9"), &[]).is_err());
        assert!(map.find_self(None, &["127.0.0.1:1143".parse().unwrap()]).is_err());
    }

    #[test]
    fn overrides_win_and_bad_maps_are_refused() {
        let m = map(&[("b1", 1.0), ("b2", 1.0)], "[overrides]\nalice = \"b1\"\nbob = \"b2\"\n");
        assert_eq!((m.home("alice").name.as_str(), m.home("BOB").name.as_str()), ("b1", "b2"));
        assert!(m.is_overridden("alice") && !m.is_overridden("carol"));
        // A move wins over the map's override; one to an unknown backend is ignored.
        let mut moved = m.clone();
        let mut moves = crate::cluster::moves::Moves::default();
        moves.merge("alice", crate::cluster::moves::Moved { backend: "b2".into(), version: 1, id: 1 });
        moves.merge("carol", crate::cluster::moves::Moved { backend: "b9".into(), version: 1, id: 2 });
        moved.set_moves(&moves);
        assert_eq!(moved.home("Alice").name, "b2");
        assert_eq!(moved.home("carol"), m.home("carol"));
        assert!(ClusterMap::parse("").is_err());
        assert!(ClusterMap::parse("[[backend]]\nname=\"a\"\nimap=\"1.2.3.4:143\"\nlmtp=\"1.2.3.4:24\"\n[overrides]\nx=\"zz\"\n").is_err());
        assert!(ClusterMap::parse("[[backend]]\nname=\"a\"\nimap=\"1.2.3.4:143\"\nlmtp=\"1.2.3.4:24\"\nweight=0\n").is_err());
        assert!(ClusterMap::parse("[[backend]]\nname=\"a\"\nimap=\"host:143\"\nlmtp=\"1.2.3.4:24\"\n").is_err(), "nginx needs an address");
    }
}
