//! This server as one backend of a cluster (docs/scale-out.md): the cluster
//! map (re-read on SIGHUP) with the users moved by `ringmail user move`,
//! which backend is this one, and whether each backend answers (checked
//! every few seconds, when the backends also tell each other the moves they
//! know). The lookup services nginx and Postfix ask are in `lookups.rs`;
//! the control port moves go through is `control.rs` and `relocate.rs`.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cluster::moves::FILE as MOVES_FILE;
use crate::cluster::{Backend, ClusterMap, Moved, Moves};
use crate::migrate::control_port::ControlClient;
use crate::migrate::relocate::{MoveOp, MoveReply};
use crate::migrate::userfiles;

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

    fn load(path: &Path, configured_self: Option<&str>, own_imap: &[SocketAddr], moves: &Moves) -> Result<View, String> {
        let mut map = ClusterMap::load(path)?;
        let me = map.find_self(configured_self, own_imap)?;
        map.set_moves(moves);
        Ok(View { map, me })
    }
}

/// A move under way of a user who lives here.
struct Claim {
    id: u64,
    lease: Duration,
    until: std::time::Instant,
}

pub struct Cluster {
    path: PathBuf,
    data_dir: PathBuf,
    view: RwLock<Arc<View>>,
    configured_self: Option<String>,
    own_imap: Vec<SocketAddr>,
    /// The moves known here; held while one is taken, so takers line up.
    moves: Mutex<Moves>,
    /// The secret the control ports share (none: no control port).
    secret: Option<Vec<u8>>,
    /// Users held here for a move (logins refused on every worker).
    holding: Mutex<HashSet<String>>,
    /// Moves of users who live here: one at a time per user.
    claims: Mutex<HashMap<String, Claim>>,
    /// Users received here, by the move that receives them.
    receiving: Mutex<HashMap<String, u64>>,
    /// Backend name to whether its IMAP port answered the last check.
    up: Mutex<HashMap<String, bool>>,
    metrics: Arc<crate::metrics::Metrics>,
}

fn load_moves(data_dir: &Path) -> Result<Moves, String> {
    let path = data_dir.join(MOVES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Moves::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Moves::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the moves durably (a new file renamed over the old, synced).
fn save_moves(data_dir: &Path, moves: &Moves) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = data_dir.join(format!("{MOVES_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(moves.encode().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(MOVES_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Whether an IMAP server at `addr` greets within [`HEALTH_TIMEOUT`] with
/// `* OK` (a port that accepts and says nothing, or `* BYE`, is not up).
fn greets(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, HEALTH_TIMEOUT) else { return false };
    let _ = s.set_read_timeout(Some(HEALTH_TIMEOUT));
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 5 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"* OK") || buf[..n].starts_with(b"* PREAUTH")
}

impl Cluster {
    pub fn load(
        path: PathBuf,
        data_dir: PathBuf,
        configured_self: Option<String>,
        own_imap: Vec<SocketAddr>,
        secret: Option<Vec<u8>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Cluster>, String> {
        let moves = load_moves(&data_dir)?;
        let view = View::load(&path, configured_self.as_deref(), &own_imap, &moves)?;
        let c = Arc::new(Cluster {
            path,
            data_dir,
            view: RwLock::new(Arc::new(view)),
            configured_self,
            own_imap,
            moves: Mutex::new(moves),
            secret,
            holding: Mutex::default(),
            claims: Mutex::default(),
            receiving: Mutex::default(),
            up: Mutex::new(HashMap::new()),
            metrics,
        });
        let weak = Arc::downgrade(&c);
        std::thread::Builder::new()
            .name("ringmail-health".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    c.check_health();
                    c.hear_moves();
                    drop(c);
                    std::thread::sleep(HEALTH_EVERY);
                }
            })
            .map_err(|e| format!("cannot start the health checks: {e}"))?;
        Ok(c)
    }

    /// SIGHUP: the map again. A map that does not load leaves the old one.
    pub fn reload(&self) -> Result<Arc<View>, String> {
        let moves = self.moves.lock().expect("moves lock");
        let view = Arc::new(View::load(&self.path, self.configured_self.as_deref(), &self.own_imap, &moves)?);
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

    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }

    pub fn moves(&self) -> Moves {
        self.moves.lock().expect("moves lock").clone()
    }

    /// Takes the later of `heard`'s moves: durably, and before the view
    /// changes. A user moved here gets the sealed copy received for them
    /// (`ringmail user move` seals it before it commits the move anywhere).
    pub fn take_moves(&self, heard: &Moves) -> Result<(), String> {
        let mut moves = self.moves.lock().expect("moves lock");
        let me = self.view().me.clone();
        let mut next = moves.clone();
        let mut changed = Vec::new();
        for (user, moved) in heard.iter().filter(|(u, m)| moves.is_news(u, m)) {
            if moved.backend == me {
                match userfiles::adopt(&self.data_dir, user, moved.id) {
                    Ok(true) => tracing::info!(user, "a user moved here; their mail is in place"),
                    // Put in place before (the move is heard again).
                    Ok(false) if userfiles::store_dir(&self.data_dir, user).exists() => {}
                    Ok(false) => {
                        // Never serve an empty store for a user whose mail
                        // is elsewhere: the move is not taken here, and the
                        // user is served by nobody until an operator looks.
                        tracing::error!(
                            user,
                            id = moved.id,
                            "a user moved here, but the copy of their mail sealed for that move is not here; the move is not taken"
                        );
                        continue;
                    }
                    Err(e) => return Err(format!("cannot put the mail of {user} in place: {e}")),
                }
                self.receiving.lock().expect("receiving lock").remove(user.as_str());
            }
            next.merge(user, moved.clone());
            changed.push(user.clone());
        }
        if changed.is_empty() {
            return Ok(());
        }
        save_moves(&self.data_dir, &next).map_err(|e| format!("cannot save {}: {e}", self.data_dir.join(MOVES_FILE).display()))?;
        let mut view = self.view.write().expect("cluster lock");
        let mut map = view.map.clone();
        map.set_moves(&next);
        *view = Arc::new(View { map, me: view.me.clone() });
        *moves = next;
        for user in changed {
            tracing::info!(user, backend = moves.get(&user).map(|m| m.backend.as_str()), "user's home changed");
        }
        Ok(())
    }

    /// Takes one move.
    pub fn take_move(&self, user: &str, moved: Moved) -> Result<(), String> {
        let mut one = Moves::default();
        one.merge(user, moved);
        self.take_moves(&one)
    }

    /// Starts a move of `user` (who lives here) if none is under way; its id.
    pub fn claim(&self, user: &str, lease: Duration) -> Result<u64, String> {
        let mut claims = self.claims.lock().expect("claims lock");
        let now = std::time::Instant::now();
        if claims.get(user).is_some_and(|c| c.until > now) {
            return Err(format!("a move of {user} is already under way"));
        }
        let id = rand::random::<u64>() >> 1;
        claims.insert(user.to_string(), Claim { id, lease, until: now + lease });
        Ok(id)
    }

    /// Keeps move `id` of `user` going; an error if it ended.
    pub fn renew(&self, user: &str, id: u64) -> Result<(), String> {
        let mut claims = self.claims.lock().expect("claims lock");
        let now = std::time::Instant::now();
        match claims.get_mut(user) {
            Some(c) if c.id == id && c.until > now => {
                c.until = now + c.lease;
                Ok(())
            }
            _ => Err(format!("the move of {user} ended here (its lease ran out, or the server restarted); run it again")),
        }
    }

    pub fn end_claim(&self, user: &str, id: u64) {
        let mut claims = self.claims.lock().expect("claims lock");
        if claims.get(user).is_some_and(|c| c.id == id) {
            claims.remove(user);
        }
    }

    /// This backend receives `user` for move `id` (ending any other's).
    pub fn receive(&self, user: &str, id: u64) {
        self.receiving.lock().expect("receiving lock").insert(user.to_string(), id);
    }

    /// Whether staged files of `user` may be written by move `id`.
    pub fn is_receiving(&self, user: &str, id: u64) -> Result<(), String> {
        match self.receiving.lock().expect("receiving lock").get(user) {
            Some(&r) if r == id => Ok(()),
            _ => Err(format!("this backend does not receive {user} for this move (another move took over, or the server restarted)")),
        }
    }

    pub fn hold_started(&self, user: &str) {
        self.holding.lock().expect("holding lock").insert(user.to_string());
    }

    pub fn hold_ended(&self, user: &str) {
        self.holding.lock().expect("holding lock").remove(user);
    }

    /// Whether `user` is held here for a move (a login is refused).
    pub fn is_moving(&self, user: &str) -> bool {
        let h = self.holding.lock().expect("holding lock");
        !h.is_empty() && h.contains(user)
    }

    fn check_health(&self) {
        let view = self.view();
        let (map, me) = (&view.map, &view.me);
        for b in map.backends().iter().filter(|b| b.name != *me) {
            let ok = greets(b.imap);
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

    /// Asks every other backend with a control port for the moves it knows
    /// and takes the later ones: a backend that missed the last step of a
    /// move (it was down, or the mover died) learns it here.
    fn hear_moves(&self) {
        let Some(secret) = self.secret() else { return };
        let view = self.view();
        for b in view.map.backends().iter().filter(|b| b.name != view.me) {
            let Some(addr) = b.control else { continue };
            let heard = ControlClient::connect(addr, secret, HEALTH_TIMEOUT).and_then(|c| c.answer_within(HEALTH_TIMEOUT)).and_then(|mut c| {
                match c.call(MoveOp::Moves, &[])? {
                    (MoveReply::Moves(m), _) => Ok(m),
                    _ => Err("unexpected answer".into()),
                }
            });
            match heard {
                Ok(m) => {
                    if let Err(e) = self.take_moves(&m) {
                        tracing::error!(backend = b.name, error = e, "cannot take the moves another backend knows");
                    }
                }
                Err(e) => tracing::debug!(backend = b.name, error = e, "cannot ask a backend for the moves it knows"),
            }
        }
    }
}
