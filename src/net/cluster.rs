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

/// The map and this backend's name in it, read and replaced together.
pub struct View {
    pub map: ClusterMap,
    pub me: String,
}

impl View {
    /// The backend `user` lives on, unless that is this one.
    pub fn elsewhere(&self, user: &str) -> Option<&Backend> {
        let home = self.map.home(user);
        (home.name != self.me).then_some(home)
    }

    fn load(path: &std::path::Path, configured_self: Option<&str>, own_imap: &[SocketAddr]) -> Result<View, String> {
        let map = ClusterMap::load(path)?;
        let me = map.find_self(configured_self, own_imap)?;
        Ok(View { map, me })
    }
}

pub struct Cluster {
    path: PathBuf,
    view: RwLock<Arc<View>>,
    configured_self: Option<String>,
    own_imap: Vec<SocketAddr>,
    /// Backend name to whether its IMAP port answered the last check.
    up: Mutex<HashMap<String, bool>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Cluster {
    pub fn load(
        path: PathBuf,
        configured_self: Option<String>,
        own_imap: Vec<SocketAddr>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Cluster>, String> {
        let view = View::load(&path, configured_self.as_deref(), &own_imap)?;
        let c = Arc::new(Cluster { path, view: RwLock::new(Arc::new(view)), configured_self, own_imap, up: Mutex::new(HashMap::new()), metrics });
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
    pub fn reload(&self) -> Result<Arc<View>, String> {
        let view = Arc::new(View::load(&self.path, self.configured_self.as_deref(), &self.own_imap)?);
        *self.view.write().expect("cluster lock") = view.clone();
        Ok(view)
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().expect("cluster lock").clone()
    }

    /// The backend `user` lives on, unless that is this one.
    pub fn elsewhere(&self, user: &str) -> Option<Backend> {
        self.view().elsewhere(user).cloned()
    }

    /// Whether `b` answered the last check (this backend always does; one
    /// not checked yet counts as up).
    pub fn is_up(&self, b: &Backend) -> bool {
        b.name == self.view().me || self.up.lock().expect("health lock").get(&b.name).copied().unwrap_or(true)
    }

    fn check_health(&self) {
        let view = self.view();
        let (map, me) = (&view.map, &view.me);
        for b in map.backends().iter().filter(|b| b.name != *me) {
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
        let health = map.backends().iter().map(|b| (b.name.clone(), b.name == *me, self.is_up(b))).collect();
        *self.metrics.cluster.lock().expect("metrics lock") = health;
    }
}
