//! `ringmail user move NAME --to BACKEND`: moves a user's store to another
//! backend of the cluster while the old one keeps serving them.
//!
//! 1. The target forgets anything it had of the user, then receives their
//!    files (the store is append-only segments, logs and whole-written
//!    indexes) in rounds, each copying what changed since the last, while
//!    the user reads and receives mail as usual.
//! 2. The old home holds the user: writes refused, deliveries deferred
//!    (451, the MTA retries), sessions closed with `BYE [UNAVAILABLE]`,
//!    every commit finished. The last changes are copied, and both sides'
//!    files compared by XXH3-128 until they are the same.
//! 3. The target seals its copy (synced, marked whole); the old home
//!    commits the move under its hold; the target and the other backends
//!    take the move, and the target puts the copy in place.
//! 4. The old home's copy is discarded.
//!
//! The copy is what a restart after a crash would open, so UIDVALIDITY,
//! UIDs, flags, modseqs and the expunge history are the same on the
//! target: clients resync as if the server had restarted. A move
//! interrupted before step 3's commit leaves the user on the old home (the
//! hold is a lease that ends by itself); after it, on the new one (the
//! backends tell each other the moves they know every few seconds).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::control_port::ControlClient;
use super::relocate::{FileInfo, MoveOp, MoveReply, PIECE};
use crate::cluster::{ClusterMap, Moved, Moves};

/// Rounds of copying while the user is served, and the most bytes the last
/// of them may leave for the hold.
const LIVE_ROUNDS: usize = 6;
const SMALL_ENOUGH: u64 = 16 << 20;
/// Comparisons under the hold before giving up.
const HELD_ROUNDS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Options {
    /// How long the old home holds the user for the last round.
    pub lease: Duration,
    /// Keep the old home's copy (it is never served again).
    pub keep_source: bool,
    pub quiet: bool,
    /// Crash tests: abort the process right after this step (`copied`,
    /// `held`, `sealed`, `committed`).
    pub crash_at: Option<String>,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub rounds: usize,
    pub files: usize,
    pub bytes: u64,
    /// How long the user was held (no writes, sessions closed).
    pub held: Duration,
    pub took: Duration,
}

/// What to do so that a copy becomes the source's files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (path, offset to copy from: 0 for the whole file).
    pub copy: Vec<(String, u64)>,
    pub remove: Vec<String>,
}

/// Plans a round. `known` is what the copy has of each file: while the user
/// is served, the source's state when it was last copied (a file with the
/// same inode that grew gets its tail: segments and logs only grow); under
/// the hold, the copy's own listing with hashes (equal length and hash:
/// nothing to do; shorter: its tail, which the next comparison checks).
pub fn plan(source: &[FileInfo], known: &HashMap<String, FileInfo>, held: bool) -> Plan {
    let mut p = Plan::default();
    for f in source {
        let from = match known.get(&f.path) {
            None => Some(0),
            Some(k) if held => match (k.len == f.len && k.hash.is_some() && k.hash == f.hash, k.len < f.len) {
                (true, _) => None,
                (false, true) => Some(k.len),
                (false, false) => Some(0),
            },
            Some(k) if k.ino == f.ino && k.len == f.len && k.mtime == f.mtime => None,
            Some(k) if k.ino == f.ino && k.len <= f.len => Some(k.len),
            Some(_) => Some(0),
        };
        if let Some(from) = from {
            p.copy.push((f.path.clone(), from));
        }
    }
    let mut remove: Vec<String> = known.keys().filter(|k| source.binary_search_by(|f| f.path.as_str().cmp(k)).is_err()).cloned().collect();
    remove.sort();
    p.remove = remove;
    p
}

struct Mover<'a> {
    user: &'a str,
    /// The move's id, given by the old home.
    id: u64,
    src: ControlClient,
    dst: ControlClient,
    quiet: bool,
    summary: Summary,
}

fn expect_done(r: (MoveReply, Vec<Vec<u8>>)) -> Result<(), String> {
    match r.0 {
        MoveReply::Done => Ok(()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn files(c: &mut ControlClient, user: &str, id: u64, staged: bool, hash: bool) -> Result<Vec<FileInfo>, String> {
    match c.call(MoveOp::Files { user: user.into(), id, staged, hash }, &[])?.0 {
        MoveReply::Files(f) => Ok(f),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

impl Mover<'_> {
    fn say(&self, what: std::fmt::Arguments) {
        if !self.quiet {
            eprintln!("{what}");
        }
    }

    /// Copies `path` from `from` to its end; the bytes copied, or None if
    /// the file went away meanwhile (a checkpoint's old log).
    fn copy_file(&mut self, path: &str, from: u64) -> Result<Option<u64>, String> {
        let mut at = from;
        loop {
            let op = MoveOp::Read { user: self.user.into(), id: self.id, path: path.into(), offset: at, len: PIECE };
            let piece = match self.src.call(op, &[]) {
                Ok((MoveReply::Data, data)) => data.into_iter().next().unwrap_or_default(),
                Ok((other, _)) => return Err(format!("unexpected answer {other:?}")),
                Err(e) if e.contains("No such file") => return Ok(None),
                Err(e) => return Err(format!("reading {path}: {e}")),
            };
            let last = (piece.len() as u64) < PIECE;
            let n = piece.len() as u64;
            expect_done(self.dst.call(MoveOp::Stage { user: self.user.into(), id: self.id, path: path.into(), offset: at, truncate: last }, &[piece])?)?;
            at += n;
            self.summary.bytes += n;
            if last {
                return Ok(Some(at));
            }
        }
    }

    /// Carries out a plan; the bytes it copied.
    fn apply(&mut self, plan: &Plan, sources: &[FileInfo], sent: &mut HashMap<String, FileInfo>) -> Result<u64, String> {
        let before = self.summary.bytes;
        for (path, from) in &plan.copy {
            match self.copy_file(path, *from)? {
                Some(len) => {
                    let mut f = sources.iter().find(|f| f.path == *path).cloned().expect("planned from the listing");
                    f.len = len;
                    sent.insert(path.clone(), f);
                }
                None => {
                    sent.remove(path);
                }
            }
        }
        if !plan.remove.is_empty() {
            expect_done(self.dst.call(MoveOp::Unstage { user: self.user.into(), id: self.id, paths: plan.remove.clone() }, &[])?)?;
            for p in &plan.remove {
                sent.remove(p);
            }
        }
        self.summary.rounds += 1;
        Ok(self.summary.bytes - before)
    }

    /// Copies while the user is served, until a round copies little.
    fn copy_live(&mut self) -> Result<(), String> {
        let mut sent = HashMap::new();
        for round in 1..=LIVE_ROUNDS {
            let sources = files(&mut self.src, self.user, self.id, false, false)?;
            let p = plan(&sources, &sent, false);
            let bytes = self.apply(&p, &sources, &mut sent)?;
            self.summary.files = sources.len();
            self.say(format_args!("round {round}: {} files changed, {bytes} bytes copied", p.copy.len()));
            if bytes < SMALL_ENOUGH {
                break;
            }
        }
        Ok(())
    }

    /// Under the hold: copies the last changes and compares both sides'
    /// hashes until they are the same.
    fn copy_held(&mut self) -> Result<(), String> {
        for _ in 0..HELD_ROUNDS {
            let sources = files(&mut self.src, self.user, self.id, false, true)?;
            let staged: HashMap<String, FileInfo> = files(&mut self.dst, self.user, self.id, true, true)?.into_iter().map(|f| (f.path.clone(), f)).collect();
            let p = plan(&sources, &staged, true);
            if p == Plan::default() {
                self.summary.files = sources.len();
                return Ok(());
            }
            let mut sent = staged;
            let bytes = self.apply(&p, &sources, &mut sent)?;
            self.say(format_args!("held: {} files changed, {bytes} bytes copied", p.copy.len()));
        }
        Err(format!("the copy still differs from the source after {HELD_ROUNDS} comparisons"))
    }
}

fn crash_point(opts: &Options, step: &str) {
    if opts.crash_at.as_deref() == Some(step) {
        eprintln!("crash test: aborting after step {step}");
        std::process::abort();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where `user` lives now: the map with every move the reachable backends
/// know. Also answers those moves.
pub fn locate(map: &ClusterMap, secret: &[u8], user: &str) -> Result<(String, Moves), String> {
    let mut known = Moves::default();
    let mut reached = 0;
    for b in map.backends() {
        let Some(addr) = b.control else { continue };
        match ControlClient::connect(addr, secret, CONNECT_TIMEOUT).and_then(|mut c| c.call(MoveOp::Moves, &[])) {
            Ok((MoveReply::Moves(m), _)) => {
                known.merge_all(&m);
                reached += 1;
            }
            Ok(_) => return Err(format!("backend {} answered something else", b.name)),
            Err(e) => eprintln!("warning: backend {}: {e}", b.name),
        }
    }
    if reached == 0 {
        return Err("no backend's control port answers".into());
    }
    let mut m = map.clone();
    m.set_moves(&known);
    Ok((m.home(user).name.clone(), known))
}

/// Moves `user` to backend `to`.
pub fn run(map: &ClusterMap, secret: &[u8], user: &str, to: &str, opts: &Options) -> Result<Summary, String> {
    let started = Instant::now();
    let target = map.backend(to).ok_or_else(|| format!("{to:?} is not a backend of the cluster map"))?;
    let (from, known) = locate(map, secret, user)?;
    if from == to {
        return Err(format!("{user} already lives on {to}"));
    }
    let source = map.backend(&from).expect("a backend of the map");
    let control = |b: &crate::cluster::Backend| b.control.ok_or_else(|| format!("backend {} has no control port in the cluster map", b.name));
    let mut src = ControlClient::connect(control(source)?, secret, CONNECT_TIMEOUT)?;
    let dst = ControlClient::connect(control(target)?, secret, CONNECT_TIMEOUT)?;
    match src.call(MoveOp::Where { user: user.into() }, &[])?.0 {
        MoveReply::Home(h) if h == from => {}
        MoveReply::Home(h) => return Err(format!("{from} has not heard yet that {user} lives on {h}; try again in a few seconds")),
        other => return Err(format!("unexpected answer {other:?}")),
    }
    let lease_ms = opts.lease.as_millis() as u64;
    let id = match src.call(MoveOp::Claim { user: user.into(), lease_ms }, &[])?.0 {
        MoveReply::Claimed(id) => id,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let mut m = Mover { user, id, src, dst, quiet: opts.quiet, summary: Summary { from: from.clone(), to: to.into(), ..Summary::default() } };
    // From here on, a failure ends the move on the old home (the user
    // stays there); the lease would end it too.
    let give_up = |m: &mut Mover, why: String| -> String {
        let _ = m.src.call(MoveOp::Release { user: user.into(), id }, &[]);
        format!("{why}; {user} stays on {from}")
    };
    m.say(format_args!("moving {user} from {from} to {to}"));
    if let Err(e) = m.dst.call(MoveOp::Receive { user: user.into(), id }, &[]).and_then(expect_done) {
        return Err(give_up(&mut m, format!("{to} cannot receive: {e}")));
    }
    if let Err(e) = m.copy_live() {
        return Err(give_up(&mut m, e));
    }
    crash_point(opts, "copied");
    if let Err(e) = m.src.call(MoveOp::Hold { user: user.into(), id, lease_ms }, &[]).and_then(expect_done) {
        return Err(give_up(&mut m, format!("{from} cannot hold {user}: {e}")));
    }
    let held_at = Instant::now();
    crash_point(opts, "held");
    if let Err(e) = m.copy_held() {
        return Err(give_up(&mut m, e));
    }
    if let Err(e) = m.dst.call(MoveOp::Seal { user: user.into(), id }, &[]).and_then(expect_done) {
        return Err(give_up(&mut m, format!("{to} cannot seal the copy: {e}")));
    }
    crash_point(opts, "sealed");
    // Later than every move of the user known anywhere, and than now.
    let version = now_ms().max(known.get(user).map_or(0, |k| k.version + 1));
    let moved = Moved { backend: to.into(), version, id };
    let commit = || MoveOp::Commit { user: user.into(), moved: moved.clone() };
    if let Err(e) = m.src.call(commit(), &[]).and_then(expect_done) {
        return Err(give_up(&mut m, format!("{from} did not commit the move: {e}")));
    }
    m.summary.held = held_at.elapsed();
    crash_point(opts, "committed");
    // The move is made. The others learn it now, or from each other soon.
    let taken = m.dst.call(commit(), &[]).and_then(expect_done);
    if let Err(e) = &taken {
        eprintln!("warning: {to} did not take the move yet ({e}); it learns it from {from} within seconds");
    }
    for b in map.backends().iter().filter(|b| b.name != from && b.name != to) {
        let told = control(b).and_then(|a| ControlClient::connect(a, secret, CONNECT_TIMEOUT)).and_then(|mut c| c.call(commit(), &[])).and_then(expect_done);
        if let Err(e) = told {
            eprintln!("warning: {} did not take the move yet ({e}); it learns it from the others when it answers", b.name);
        }
    }
    // The old copy goes only once the new home has its own in place.
    if !opts.keep_source && taken.is_ok() {
        if let Err(e) = m.src.call(MoveOp::Discard { user: user.into() }, &[]).and_then(expect_done) {
            eprintln!("warning: the old copy on {from} was not removed: {e}");
        }
    }
    m.summary.took = started.elapsed();
    Ok(m.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, len: u64, ino: u64, mtime: i128, hash: Option<&str>) -> FileInfo {
        FileInfo { path: path.into(), len, mtime, ino, hash: hash.map(str::to_string) }
    }

    #[test]
    fn rounds_copy_what_changed_and_the_held_round_trusts_only_hashes() {
        let first = [f("a/seg", 100, 1, 10, None), f("idx", 50, 2, 10, None), f("log", 20, 3, 10, None)];
        let known: HashMap<String, FileInfo> = HashMap::new();
        assert_eq!(plan(&first, &known, false).copy, [("a/seg".into(), 0), ("idx".into(), 0), ("log".into(), 0)]);
        let known: HashMap<String, FileInfo> = first.iter().map(|x| (x.path.clone(), x.clone())).collect();
        // The segment grew, the index was written anew (another inode), the
        // log is as it was, a new log appeared and nothing was removed.
        let second = [f("a/seg", 180, 1, 11, None), f("idx", 50, 9, 11, None), f("log", 20, 3, 10, None), f("log2", 5, 4, 11, None)];
        let p = plan(&second, &known, false);
        assert_eq!(p.copy, [("a/seg".into(), 100), ("idx".into(), 0), ("log2".into(), 0)]);
        assert!(p.remove.is_empty());
        // A file gone from the source goes from the copy.
        assert_eq!(plan(&second[..2], &known, false).remove, ["log".to_string()]);
        // Same length and time but another inode: copied again.
        assert_eq!(plan(&[f("log", 20, 7, 10, None)], &known, false).copy, [("log".into(), 0)]);
        // Held: only equal hashes count as the same.
        let held = [f("a/seg", 180, 1, 11, Some("h1")), f("idx", 50, 9, 11, Some("h2"))];
        let staged: HashMap<String, FileInfo> = [f("a/seg", 100, 5, 99, Some("old")), f("idx", 50, 6, 99, Some("hX")), f("stray", 1, 7, 99, Some("h"))]
            .into_iter()
            .map(|x| (x.path.clone(), x))
            .collect();
        let p = plan(&held, &staged, true);
        assert_eq!(p.copy, [("a/seg".into(), 100), ("idx".into(), 0)]);
        assert_eq!(p.remove, ["stray".to_string()]);
        let same: HashMap<String, FileInfo> = held.iter().map(|x| (x.path.clone(), f(&x.path, x.len, 0, 0, x.hash.as_deref()))).collect();
        assert_eq!(plan(&held, &same, true), Plan::default(), "equal: done");
        let unhashed: HashMap<String, FileInfo> = held.iter().map(|x| (x.path.clone(), f(&x.path, x.len, x.ino, x.mtime, None))).collect();
        assert_eq!(plan(&held, &unhashed, true).copy.len(), 2, "no hash, no trust");
    }
}
