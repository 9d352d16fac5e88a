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
use super::relocate::{FileInfo, MoveOp, MoveReply, BLOCK, PIECE, ZERO_BLOCK};
use crate::cluster::{ClusterMap, Moved, Moves};

/// Rounds of copying while the user is served, and the most bytes the last
/// of them may leave for the hold.
const LIVE_ROUNDS: usize = 6;
const SMALL_ENOUGH: u64 = 16 << 20;
/// Rounds under the hold before giving up (the second finds nothing to do
/// unless files went away meanwhile).
const HELD_ROUNDS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A file modified this close to the listing it was copied after is looked
/// at again even if its time and length did not change: file times move in
/// clock ticks, and a write in the same tick as the one before leaves them.
const MARGIN: i128 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Options {
    /// How long the old home waits for the mover between operations, and
    /// holds the user for the last changes at most.
    pub lease: Duration,
    /// Keep the old home's copy (it is never served again).
    pub keep_source: bool,
    pub quiet: bool,
    /// Name every file copied in each round.
    pub verbose: bool,
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
    /// Bytes of data copied (holes travel as lengths).
    pub bytes: u64,
    /// How long the user was held (no writes, sessions closed).
    pub held: Duration,
    pub took: Duration,
}

/// What the copy has of a source file: the source's listing when it was
/// copied (and that listing's time, by the source's clock) and the hashes
/// of the blocks written.
#[derive(Debug, Clone)]
pub struct Sent {
    pub info: FileInfo,
    pub listed_at: i128,
    pub blocks: Vec<u64>,
}

/// The files to look at in a round (new, changed since they were copied,
/// or modified within [`MARGIN`] of that copy's listing), and those the
/// copy has that the source no longer does.
pub fn to_check<'a>(source: &'a [FileInfo], sent: &HashMap<String, Sent>) -> (Vec<&'a FileInfo>, Vec<String>) {
    let check = source
        .iter()
        .filter(|f| match sent.get(&f.path) {
            None => true,
            Some(s) => s.info.len != f.len || s.info.ino != f.ino || s.info.mtime != f.mtime || s.info.mtime >= s.listed_at - MARGIN,
        })
        .collect();
    let mut gone: Vec<String> = sent.keys().filter(|k| source.binary_search_by(|f| f.path.as_str().cmp(k)).is_err()).cloned().collect();
    gone.sort();
    (check, gone)
}

/// A run of blocks to copy: bytes, or a hole of `len` zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub len: u64,
    pub zeros: bool,
}

/// The pieces that make a copy whose blocks hash to `had` one whose blocks
/// hash to `blocks` (a file of `len` bytes): each changed block, runs of
/// them joined up to [`PIECE`] bytes.
pub fn pieces(len: u64, blocks: &[u64], had: &[u64]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for (i, &h) in blocks.iter().enumerate() {
        if had.get(i) == Some(&h) {
            continue;
        }
        let offset = i as u64 * BLOCK;
        let n = BLOCK.min(len - offset);
        let zeros = h == ZERO_BLOCK;
        match out.last_mut() {
            Some(p) if p.zeros == zeros && p.offset + p.len == offset && (zeros || p.len + n <= PIECE) => p.len += n,
            _ => out.push(Piece { offset, len: n, zeros }),
        }
    }
    out
}

struct Mover<'a> {
    user: &'a str,
    /// The move's id, given by the old home.
    id: u64,
    src: ControlClient,
    dst: ControlClient,
    quiet: bool,
    verbose: bool,
    sent: HashMap<String, Sent>,
    summary: Summary,
}

fn expect_done(r: (MoveReply, Vec<Vec<u8>>)) -> Result<(), String> {
    match r.0 {
        MoveReply::Done => Ok(()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

impl Mover<'_> {
    fn say(&self, what: std::fmt::Arguments) {
        if !self.quiet {
            eprintln!("{what}");
        }
    }

    /// Brings the copy of `f` up to date: the bytes copied and whether the
    /// copy changed; None if the file went away meanwhile (a checkpoint's
    /// old log).
    fn copy_file(&mut self, f: &FileInfo, listed_at: i128) -> Result<Option<(u64, bool)>, String> {
        let (user, id) = (self.user.to_string(), self.id);
        let (len, blocks) = match self.src.call(MoveOp::Blocks { user: user.clone(), id, path: f.path.clone() }, &[]) {
            Ok((MoveReply::Blocks { len, blocks }, _)) => (len, blocks),
            Ok((other, _)) => return Err(format!("unexpected answer {other:?}")),
            Err(e) if e.contains("No such file") => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", f.path)),
        };
        let had = self.sent.get(&f.path);
        let (plan, had_len) = (pieces(len, &blocks, had.map_or(&[][..], |s| &s.blocks)), had.map(|s| s.info.len));
        let changed = !plan.is_empty() || had_len != Some(len);
        let mut copied = 0;
        for p in plan {
            let stage = |data| MoveOp::Stage { user: user.clone(), id, path: f.path.clone(), offset: p.offset, zeros: if data { 0 } else { p.len } };
            if p.zeros {
                expect_done(self.dst.call(stage(false), &[])?)?;
                continue;
            }
            let bytes = match self.src.call(MoveOp::Read { user: user.clone(), id, path: f.path.clone(), offset: p.offset, len: p.len }, &[]) {
                Ok((MoveReply::Data, data)) => data.into_iter().next().unwrap_or_default(),
                Ok((other, _)) => return Err(format!("unexpected answer {other:?}")),
                Err(e) if e.contains("No such file") => return Ok(None),
                Err(e) => return Err(format!("reading {}: {e}", f.path)),
            };
            copied += bytes.len() as u64;
            expect_done(self.dst.call(stage(true), &[bytes])?)?;
        }
        if had_len != Some(len) {
            expect_done(self.dst.call(MoveOp::Truncate { user, id, path: f.path.clone(), len }, &[])?)?;
        }
        self.sent.insert(f.path.clone(), Sent { info: FileInfo { len, ..f.clone() }, listed_at, blocks });
        Ok(Some((copied, changed)))
    }

    /// One round: the files that may have changed are compared block by
    /// block and their changed blocks copied; files gone from the source
    /// go from the copy. Answers (files changed, bytes copied).
    fn round(&mut self) -> Result<(usize, u64), String> {
        let (files, now) = match self.src.call(MoveOp::Files { user: self.user.into(), id: self.id, staged: false }, &[])?.0 {
            MoveReply::Files { files, now } => (files, now),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let (check, gone) = to_check(&files, &self.sent);
        let check: Vec<FileInfo> = check.into_iter().cloned().collect();
        let mut changed = gone.len();
        let mut bytes = 0;
        for f in &check {
            match self.copy_file(f, now)? {
                Some((n, changed_here)) => {
                    if self.verbose {
                        eprintln!("  {}: {n} bytes of {}", f.path, f.len);
                    }
                    bytes += n;
                    changed += usize::from(changed_here);
                }
                None => {
                    changed += usize::from(self.sent.remove(&f.path).is_some());
                }
            }
        }
        if !gone.is_empty() {
            expect_done(self.dst.call(MoveOp::Unstage { user: self.user.into(), id: self.id, paths: gone.clone() }, &[])?)?;
            for p in &gone {
                self.sent.remove(p);
            }
        }
        self.summary.rounds += 1;
        self.summary.files = self.sent.len();
        self.summary.bytes += bytes;
        Ok((changed, bytes))
    }

    /// Copies while the user is served, until a round copies little.
    fn copy_live(&mut self) -> Result<(), String> {
        for n in 1..=LIVE_ROUNDS {
            let (changed, bytes) = self.round()?;
            self.say(format_args!("round {n}: {changed} files changed, {bytes} bytes copied"));
            if bytes < SMALL_ENOUGH {
                break;
            }
        }
        Ok(())
    }

    /// Under the hold: copies the last changes, until a round finds none.
    fn copy_held(&mut self) -> Result<(), String> {
        for _ in 0..HELD_ROUNDS {
            let (changed, bytes) = self.round()?;
            self.say(format_args!("held: {changed} files changed, {bytes} bytes copied"));
            if changed == 0 {
                return Ok(());
            }
        }
        Err(format!("the copy still changes after {HELD_ROUNDS} rounds under the hold"))
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
    let mut m = Mover {
        user,
        id,
        src,
        dst,
        quiet: opts.quiet,
        verbose: opts.verbose && !opts.quiet,
        sent: HashMap::new(),
        summary: Summary { from: from.clone(), to: to.into(), ..Summary::default() },
    };
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

    fn f(path: &str, len: u64, ino: u64, mtime: i128) -> FileInfo {
        FileInfo { path: path.into(), len, mtime, ino }
    }

    #[test]
    fn a_round_looks_at_new_changed_and_recently_written_files() {
        let s = 1_000_000_000i128;
        let sent: HashMap<String, Sent> = [
            (f("old", 10, 1, 100 * s), 200 * s),
            (f("grown", 10, 2, 100 * s), 200 * s),
            (f("rewritten", 10, 3, 100 * s), 200 * s),
            (f("recent", 10, 4, 200 * s - s / 2), 200 * s),
            (f("gone", 10, 5, 100 * s), 200 * s),
        ]
        .into_iter()
        .map(|(info, listed_at)| (info.path.clone(), Sent { info, listed_at, blocks: vec![] }))
        .collect();
        let source = [
            f("grown", 20, 2, 201 * s),
            f("new", 5, 9, 201 * s),
            f("old", 10, 1, 100 * s),
            f("recent", 10, 4, 200 * s - s / 2),
            f("rewritten", 10, 7, 100 * s),
        ];
        let (check, gone) = to_check(&source, &sent);
        assert_eq!(check.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["grown", "new", "recent", "rewritten"]);
        assert_eq!(gone, ["gone"]);
    }

    #[test]
    fn changed_blocks_are_copied_in_runs_and_holes_travel_as_lengths() {
        let z = ZERO_BLOCK;
        // A new file: everything, data runs joined up to PIECE, holes joined.
        let len = 7 * BLOCK + 10;
        let blocks = [5, 6, z, z, z, 7, 8, 9];
        let p = pieces(len, &blocks, &[]);
        assert_eq!(
            p,
            [
                Piece { offset: 0, len: 2 * BLOCK, zeros: false },
                Piece { offset: 2 * BLOCK, len: 3 * BLOCK, zeros: true },
                Piece { offset: 5 * BLOCK, len: 2 * BLOCK + 10, zeros: false },
            ]
        );
        // Only what changed: a block written in place, a hole punched.
        assert_eq!(
            pieces(len, &[5, 66, z, z, z, z, 8, 9], &blocks),
            [Piece { offset: BLOCK, len: BLOCK, zeros: false }, Piece { offset: 5 * BLOCK, len: BLOCK, zeros: true }]
        );
        assert!(pieces(len, &blocks, &blocks).is_empty());
        // Long runs are cut at PIECE.
        let many: Vec<u64> = (1..=10).collect();
        assert!(pieces(10 * BLOCK, &many, &[]).iter().all(|p| p.len <= PIECE));
        assert_eq!(pieces(10 * BLOCK, &many, &[]).iter().map(|p| p.len).sum::<u64>(), 10 * BLOCK);
    }
}
