//! This server as one backend of a cluster (docs/scale-out.md): the cluster
//! map (re-read on SIGHUP), which backend is this one, and whether each
//! backend answers (checked every few seconds). The lookup services nginx
//! and Postfix ask are in `lookups.rs`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cluster::{Backend, ClusterMap};

/// How often every backend's IMAP port is tried, and for how long.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Cluster {
    path: PathBuf,
    map: RwLock<Arc<ClusterMap>>,
    /// This backend's name in the map.
    me: RwLock<String>,
    configured_self: Option<String>,
    own_imap: Vec<SocketAddr>,
    /// Backend name to whether its IMAP port answered the last check.
    up: Mutex<HashMap<String, bool>>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The backend whose IMAP address is one of `own` (a wildcard listener
/// matches any address on its port).
fn find_self(map: &ClusterMap, configured: Option<&str>, own: &[SocketAddr]) -> Result<String, String> {
    if let Some(name) = configured {
        return map.backend(name).map(|b| b.name.clone()).ok_or_else(|| format!("[cluster] self = {name:?} is not in the cluster map"));
    }
    let mine = |b: &Backend| own.iter().any(|a| a.port() == b.imap.port() && (a.ip() == b.imap.ip() || a.ip().is_unspecified()));
    let found: Vec<&Backend> = map.backends().iter().filter(|b| mine(b)).collect();
    match found.as_slice() {
        [b] => Ok(b.name.clone()),
        [] => Err("no backend of the cluster map has an IMAP address this server listens on; set [cluster] self".into()),
        _ => Err("several backends of the cluster map match this server's IMAP addresses; set [cluster] self".into()),
    }
}

impl Cluster {
    pub fn load(
        path: PathBuf,
        configured_self: Option<String>,
        own_imap: Vec<SocketAddr>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Cluster>, String> {
        let map = ClusterMap::load(&path)?;
        let me = find_self(&map, configured_self.as_deref(), &own_imap)?;
        let c = Arc::new(Cluster {
            path,
            map: RwLock::new(Arc::new(map)),
            me: RwLock::new(me),
            configured_self,
            own_imap,
            up: Mutex::new(HashMap::new()),
            metrics,
        });
        let weak = Arc::downgrade(&c);
        std::thread::Builder::new()
            .name("ringmail-health".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    c.check_health();
                    drop(c);
                    std::thread::sleep(HEALTH_EVERY);
                }
            })
            .map_err(|e| format!("cannot start the health checks: {e}"))?;
        Ok(c)
    }

    /// SIGHUP: the map again. A map that does not load leaves the old one.
    pub fn reload(&self) -> Result<usize, String> {
        let map = ClusterMap::load(&self.path)?;
        let me = find_self(&map, self.configured_self.as_deref(), &self.own_imap)?;
        let n = map.backends().len();
        *self.map.write().expect("cluster lock") = Arc::new(map);
        *self.me.write().expect("cluster lock") = me;
        Ok(n)
    }

    pub fn map(&self) -> Arc<ClusterMap> {
        self.map.read().expect("cluster lock").clone()
    }

    pub fn me(&self) -> String {
        self.me.read().expect("cluster lock").clone()
    }

    /// The backend `user` lives on, unless that is this one.
    pub fn elsewhere(&self, user: &str) -> Option<Backend> {
        let map = self.map();
        let home = map.home(user);
        (home.name != *self.me.read().expect("cluster lock")).then(|| home.clone())
    }

    /// Whether `b` answered the last check (this backend always does; one
    /// not checked yet counts as up).
    pub fn is_up(&self, b: &Backend) -> bool {
        b.name == self.me() || self.up.lock().expect("health lock").get(&b.name).copied().unwrap_or(true)
    }

    fn check_health(&self) {
        let map = self.map();
        let me = self.me();
        for b in map.backends().iter().filter(|b| b.name != me) {
            let ok = TcpStream::connect_timeout(&b.imap, HEALTH_TIMEOUT).is_ok();
            let was = self.up.lock().expect("health lock").insert(b.name.clone(), ok);
            if was != Some(ok) {
                if ok {
                    tracing::info!(backend = b.name, addr = %b.imap, "backend is up");
                } else {
                    tracing::warn!(backend = b.name, addr = %b.imap, "backend does not answer; its users get a temporary error");
                }
            }
        }
        let health = map.backends().iter().map(|b| (b.name.clone(), b.name == me, self.is_up(b))).collect();
        *self.metrics.cluster.lock().expect("metrics lock") = health;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_backend_is_found_by_its_listening_address() {
        let map = ClusterMap::parse(
            "[[backend]]\nname=\"b1\"\nimap=\"10.0.0.1:143\"\nlmtp=\"10.0.0.1:24\"\n[[backend]]\nname=\"b2\"\nimap=\"10.0.0.2:143\"\nlmtp=\"10.0.0.2:24\"\n",
        )
        .unwrap();
        assert_eq!(find_self(&map, None, &["10.0.0.2:143".parse().unwrap()]).unwrap(), "b2");
        assert!(find_self(&map, None, &["0.0.0.0:143".parse().unwrap()]).is_err(), "ambiguous");
        assert_eq!(find_self(&map, Some("b1"), &["0.0.0.0:143".parse().unwrap()]).unwrap(), "b1");
        assert!(find_self(&map, Some("b9"), &[]).is_err());
        assert!(find_self(&map, None, &["127.0.0.1:1143".parse().unwrap()]).is_err());
    }
}
