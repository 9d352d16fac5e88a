//! Crash safety checked against a model, across every mutating operation:
//! random sequences of APPEND, STORE, EXPUNGE, COPY, MOVE, delivery,
//! CREATE, RENAME and DELETE (with checkpoints, hole punching and
//! compaction running as the server runs them), a write failure, a sync
//! failure or a full disk at a random point, a simulated power loss, a
//! second life on what recovery left, and a second power loss.
//!
//! What is checked after each loss: every acknowledged message is there
//! with its bytes, its UID and its last acknowledged flags (or the flags of
//! a later change that was not acknowledged); every acknowledged expunge
//! stays gone; nothing appears that was not written, or was refused; every
//! acknowledged CREATE, RENAME and DELETE holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use super::io::{CrashMode, MemIo};
use super::*;

/// Operations per life, and cases.
const STEPS: usize = 70;
const SEEDS: u64 = 120;

fn settings() -> Settings {
    Settings { segment_size: 48 * 1024, sync: crate::config::SyncMode::Always, checkpoint_records: 25, compaction_min_dead: 24 * 1024 }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    No,
    Maybe,
    Yes,
}

/// One message as clients were told about it. Messages are identified by
/// their bytes (each carries a unique Message-ID).
#[derive(Debug, Clone)]
struct MsgModel {
    uid: Option<u32>,
    /// Acknowledged as stored.
    acked: bool,
    /// The flags it may have: the last acknowledged value and any later
    /// unacknowledged one.
    flags: BTreeSet<u8>,
    gone: Gone,
}

#[derive(Debug, Clone, Default)]
struct BoxModel {
    msgs: BTreeMap<Vec<u8>, MsgModel>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// Mailbox names to model ids; ids stay with a mailbox across RENAME.
    names: BTreeMap<String, usize>,
    boxes: Vec<BoxModel>,
}

#[derive(Debug, Clone)]
enum MailboxOp {
    Create(String),
    Delete(String),
    Rename(String, String),
}

impl Model {
    fn new() -> Model {
        let mut m = Model::default();
        for (n, _) in DEFAULT_MAILBOXES {
            m.add(n);
        }
        m
    }

    fn add(&mut self, name: &str) {
        self.boxes.push(BoxModel::default());
        self.names.insert(name.to_string(), self.boxes.len() - 1);
    }

    fn apply(&mut self, op: &MailboxOp) {
        match op {
            MailboxOp::Create(n) => {
                // Missing parents are created too (RFC 9051 6.3.4).
                for p in manifest::parents(n) {
                    if !self.names.contains_key(p) {
                        self.add(p);
                    }
                }
                self.add(n)
            }
            MailboxOp::Delete(n) => {
                self.names.remove(n);
            }
            MailboxOp::Rename(a, b) => {
                let id = self.names.remove(a).expect("renamed mailbox exists");
                self.names.insert(b.clone(), id);
                if a == "INBOX" {
                    self.add("INBOX");
                }
            }
        }
    }

    fn msg(&mut self, id: usize, bytes: &[u8]) -> &mut MsgModel {
        self.boxes[id].msgs.get_mut(bytes).expect("known message")
    }
}

/// A change waiting for its ticket; applied to the model when it is Ok.
enum Pending {
    Stored { id: usize, bytes: Vec<u8> },
    Flags { id: usize, bytes: Vec<u8>, flags: u8 },
    Expunged { id: usize, bytes: Vec<Vec<u8>> },
}

struct World {
    store: Store,
    user: Rc<UserStore>,
    model: Model,
    /// The model had a mailbox operation been acknowledged whose answer
    /// never came (the life ended right after it).
    alt: Option<Model>,
    pending: Vec<(Ticket, Pending)>,
    serial: u64,
    /// Every message body ever written (refused ones included).
    written: BTreeSet<Vec<u8>>,
    ops: usize,
    acked_ops: usize,
}

impl World {
    fn open(io: Rc<MemIo>, model: Model) -> Result<World, String> {
        let store = Store::new(io, Path::new("/mail"), settings());
        let user = store.user("u", 1_000).map_err(|e| format!("user store does not open: {e}"))?;
        Ok(World { store, user, model, alt: None, pending: Vec::new(), serial: 0, written: BTreeSet::new(), ops: 0, acked_ops: 0 })
    }

    /// Runs the store's background tasks and applies every answered ticket.
    fn settle(&mut self) {
        self.store.run_pending();
        let mut still = Vec::new();
        for (t, p) in std::mem::take(&mut self.pending) {
            match t.result() {
                None => still.push((t, p)),
                Some(Err(_)) => {}
                Some(Ok(())) => {
                    self.acked_ops += 1;
                    match p {
                        Pending::Stored { id, bytes } => self.model.msg(id, &bytes).acked = true,
                        Pending::Flags { id, bytes, flags } => {
                            let m = self.model.msg(id, &bytes);
                            m.flags = BTreeSet::from([flags]);
                        }
                        Pending::Expunged { id, bytes } => {
                            for b in bytes {
                                self.model.msg(id, &b).gone = Gone::Yes;
                            }
                        }
                    }
                }
            }
        }
        self.pending = still;
    }

    fn body(&mut self, rng: &mut Rng) -> Vec<u8> {
        self.serial += 1;
        let mut m = format!("Message-ID: <{}.{}@model>\r\nSubject: m{}\r\n\r\n", rng.next(), self.serial, self.serial).into_bytes();
        let size = 60 + rng.below(6000);
        while m.len() < size {
            m.extend_from_slice(format!("line {} of {}\r\n", m.len(), self.serial).as_bytes());
        }
        self.written.insert(m.clone());
        m
    }

    /// A random existing mailbox: (name, model id, handle).
    fn pick_box(&mut self, rng: &mut Rng) -> Option<(String, usize, MailboxRef)> {
        let names: Vec<(String, usize)> = self.model.names.iter().map(|(n, &i)| (n.clone(), i)).collect();
        let (name, id) = names.get(rng.below(names.len()))?.clone();
        let mb = self.user.mailbox(&name).ok()?;
        Some((name, id, mb))
    }

    /// A random live message of a mailbox: (uid, bytes).
    fn pick_msg(mb: &MailboxRef, rng: &mut Rng) -> Option<(u32, Vec<u8>)> {
        let m = mb.borrow();
        let n = m.msgs().len();
        if n == 0 {
            return None;
        }
        let msg = m.msgs()[rng.below(n)];
        let bytes = m.message(&msg).ok()?.bytes().to_vec();
        Some((msg.uid, bytes))
    }

    fn append(&mut self, id: usize, mb: &MailboxRef, bytes: Vec<u8>, flags: u8) -> bool {
        let r = mb.borrow_mut().append_bytes(&bytes, flags, 0, 7);
        if std::env::var_os("RINGMAIL_MODEL_TRACE").is_some() {
            eprintln!("append to {id}: {:?} -> {r:?}", String::from_utf8_lossy(&bytes[..40]));
        }
        match r {
            Ok(uid) => {
                self.model.boxes[id].msgs.insert(bytes.clone(), MsgModel { uid: Some(uid), acked: false, flags: BTreeSet::from([flags]), gone: Gone::No });
                self.pending.push((self.user.durable(mb), Pending::Stored { id, bytes }));
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for a mailbox operation's ticket; false ends this life.
    fn mailbox_op(&mut self, op: MailboxOp) -> bool {
        let r = match &op {
            MailboxOp::Create(n) => self.user.create(n, None, 2_000),
            MailboxOp::Delete(n) => self.user.delete(n),
            MailboxOp::Rename(a, b) => self.user.rename(a, b, 2_000),
        };
        if r.is_err() {
            return true;
        }
        let t = self.user.manifest_durable();
        self.settle();
        match t.result() {
            Some(Ok(())) => {
                self.model.apply(&op);
                self.acked_ops += 1;
                true
            }
            _ => {
                // The answer was NO (or never came): either outcome may be on disk.
                let mut alt = self.model.clone();
                alt.apply(&op);
                self.alt = Some(alt);
                false
            }
        }
    }

    /// One random operation. False: the life ends here.
    fn step(&mut self, rng: &mut Rng) -> bool {
        self.ops += 1;
        let op = rng.below(20);
        if std::env::var_os("RINGMAIL_MODEL_TRACE").is_some() {
            eprintln!("op {op} names {:?}", self.model.names);
        }
        match op {
            // APPEND, sometimes several before anyone waits (one batch).
            0..=5 => {
                if let Some((_, id, mb)) = self.pick_box(rng) {
                    let b = self.body(rng);
                    self.append(id, &mb, b, (rng.next() % 32) as u8);
                }
            }
            // Delivery: the LMTP/SMTP path into INBOX.
            6 => {
                let b = self.body(rng);
                if let Ok(mb) = crate::delivery::store_copy(&self.store, "u", None, &[&b], 7) {
                    let id = self.model.names["INBOX"];
                    let uid = mb.borrow().msgs().last().map(|m| m.uid);
                    let _ = uid;
                    self.model.boxes[id].msgs.insert(b.clone(), MsgModel { uid: None, acked: false, flags: BTreeSet::from([0]), gone: Gone::No });
                    self.pending.push((self.user.durable(&mb), Pending::Stored { id, bytes: b }));
                }
            }
            // STORE over a range: +FLAGS or -FLAGS, one record at one modseq.
            7 => {
                let Some((_, id, mb)) = self.pick_box(rng) else { return true };
                let uids: Vec<u32> = {
                    let m = mb.borrow();
                    let from = rng.below(m.msgs().len());
                    m.msgs().iter().skip(from).take(1 + rng.below(8)).map(|m| m.uid).collect()
                };
                let bit = 1u8 << rng.below(5);
                let change = if rng.below(2) == 0 { format::FlagChange::add(bit, 0) } else { format::FlagChange::remove(bit, 0) };
                let r = mb.borrow_mut().change_flags(&uids, change);
                for uid in r.map(|done| done.changed).unwrap_or_default() {
                    let (bytes, flags) = {
                        let m = mb.borrow();
                        let msg = *m.find(uid).expect("just changed");
                        (m.message(&msg).expect("readable").bytes().to_vec(), msg.flags)
                    };
                    if let Some(m) = self.model.boxes[id].msgs.get_mut(&bytes) {
                        m.flags.insert(flags);
                    }
                    self.pending.push((self.user.durable(&mb), Pending::Flags { id, bytes, flags }));
                }
            }
            8 | 9 => {
                let Some((_, id, mb)) = self.pick_box(rng) else { return true };
                let Some((uid, bytes)) = Self::pick_msg(&mb, rng) else { return true };
                let flags = (rng.next() % 32) as u8;
                let r = mb.borrow_mut().set_flags(uid, flags, 0);
                if let Ok(Some(_)) = r {
                    if let Some(m) = self.model.boxes[id].msgs.get_mut(&bytes) {
                        m.flags.insert(flags);
                    }
                    self.pending.push((self.user.durable(&mb), Pending::Flags { id, bytes, flags }));
                }
            }
            10 | 11 => {
                let Some((_, id, mb)) = self.pick_box(rng) else { return true };
                let mut doomed = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    if let Some(x) = Self::pick_msg(&mb, rng) {
                        doomed.push(x);
                    }
                }
                let uids: Vec<u32> = doomed.iter().map(|(u, _)| *u).collect();
                let r = mb.borrow_mut().expunge(&uids);
                if let Ok(gone) = r {
                    let bytes: Vec<Vec<u8>> = doomed.into_iter().filter(|(u, _)| gone.contains(u)).map(|(_, b)| b).collect();
                    for b in &bytes {
                        if let Some(m) = self.model.boxes[id].msgs.get_mut(b) {
                            if m.gone == Gone::No {
                                m.gone = Gone::Maybe;
                            }
                        }
                    }
                    self.pending.push((self.user.durable(&mb), Pending::Expunged { id, bytes }));
                }
            }
            // COPY or MOVE: copies durable first, then the originals go.
            12 | 13 => {
                let moving = rng.below(2) == 0;
                let Some((_, sid, src)) = self.pick_box(rng) else { return true };
                let Some((_, did, dst)) = self.pick_box(rng) else { return true };
                let Some((uid, bytes)) = Self::pick_msg(&src, rng) else { return true };
                if Rc::ptr_eq(&src, &dst) || self.model.boxes[did].msgs.contains_key(&bytes) {
                    return true;
                }
                if !self.append(did, &dst, bytes.clone(), 0) {
                    return true;
                }
                if moving {
                    let t = self.user.durable(&dst);
                    self.settle();
                    if let Some(Ok(())) = t.result() {
                        if let Ok(gone) = src.borrow_mut().expunge(&[uid]) {
                            if !gone.is_empty() {
                                if let Some(m) = self.model.boxes[sid].msgs.get_mut(&bytes) {
                                    m.gone = Gone::Maybe;
                                }
                                self.pending.push((self.user.durable(&src), Pending::Expunged { id: sid, bytes: vec![bytes] }));
                            }
                        }
                    }
                }
            }
            14 => {
                let n = format!("box{}", rng.below(6));
                let name = if rng.below(3) == 0 { format!("dir/{n}") } else { n };
                return self.mailbox_op(MailboxOp::Create(name));
            }
            15 => {
                let names: Vec<String> = self.model.names.keys().filter(|n| *n != "INBOX").cloned().collect();
                if let Some(n) = names.get(rng.below(names.len())) {
                    // Children would make it a placeholder: keep the model simple.
                    if !self.user.has_children(n) {
                        return self.mailbox_op(MailboxOp::Delete(n.clone()));
                    }
                }
            }
            16 => {
                let names: Vec<String> = self.model.names.keys().cloned().collect();
                if let Some(a) = names.get(rng.below(names.len())) {
                    let b = format!("renamed{}", rng.below(50));
                    if !self.user.has_children(a) && !self.model.names.contains_key(&b) {
                        return self.mailbox_op(MailboxOp::Rename(a.clone(), b));
                    }
                }
            }
            // The server's background work.
            17 => {
                let s = &self.store;
                s.block_on(s.housekeep(|| std::future::ready(())));
                self.settle();
            }
            _ => self.settle(),
        }
        true
    }
}

/// Checks what a recovered store holds against a model.
fn check(user: &UserStore, model: &Model) -> Result<(), String> {
    let listed: BTreeSet<String> = user.entries().into_iter().filter(|e| !e.noselect).map(|e| e.name).collect();
    let modelled: BTreeSet<String> = model.names.keys().cloned().collect();
    if listed != modelled {
        return Err(format!("mailboxes {listed:?}, model {modelled:?}"));
    }
    for (name, &id) in &model.names {
        let mb = user.mailbox(name).map_err(|e| format!("{name} does not open: {e:?}"))?;
        let mb = mb.borrow();
        let mut seen = BTreeSet::new();
        let mut last_uid = 0;
        for m in mb.msgs() {
            if m.uid <= last_uid {
                return Err(format!("{name}: UIDs out of order"));
            }
            last_uid = m.uid;
            let bytes = mb.message(m).map_err(|e| format!("{name}: uid {} unreadable: {e}", m.uid))?.bytes().to_vec();
            let Some(mm) = model.boxes[id].msgs.get(&bytes) else {
                return Err(format!("{name}: uid {} holds bytes nobody stored there ({:?})", m.uid, String::from_utf8_lossy(&bytes[..bytes.len().min(60)])));
            };
            if mm.gone == Gone::Yes {
                return Err(format!("{name}: uid {} came back after an acknowledged expunge", m.uid));
            }
            if mm.uid.is_some_and(|u| u != m.uid) {
                return Err(format!("{name}: message stored as uid {:?} came back as uid {}", mm.uid, m.uid));
            }
            if mm.acked && !mm.flags.contains(&m.flags) {
                return Err(format!("{name}: uid {} has flags {} but the acknowledged ones are {:?}", m.uid, m.flags, mm.flags));
            }
            seen.insert(bytes);
        }
        for (bytes, mm) in &model.boxes[id].msgs {
            if mm.acked && mm.gone == Gone::No && !seen.contains(bytes) {
                return Err(format!("{name}: acknowledged message uid {:?} lost", mm.uid));
            }
        }
    }
    Ok(())
}

fn check_either(user: &UserStore, model: &Model, alt: &Option<Model>) -> Result<(), String> {
    match (check(user, model), alt) {
        (Ok(()), _) => Ok(()),
        (Err(e), None) => Err(e),
        (Err(e), Some(a)) => check(user, a).map_err(|e2| format!("{e} / with the unanswered mailbox operation: {e2}")),
    }
}

fn crash_mode(rng: &mut Rng) -> CrashMode {
    match rng.below(3) {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::Random(rng.next()),
    }
}

#[test]
fn every_acknowledged_change_survives_faults_and_two_power_losses() {
    let mut stats = [0usize; 4];
    let only: Option<u64> = std::env::var("RINGMAIL_MODEL_SEED").ok().and_then(|v| v.parse().ok());
    let seeds: u64 = std::env::var("RINGMAIL_MODEL_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(SEEDS);
    for seed in 1..=seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let io = Rc::new(MemIo::new());
        let mut w = World::open(io.clone(), Model::new()).unwrap();
        let fault_at = rng.below(STEPS);
        let fault = rng.below(4);
        let mut freed_at = None;
        for step in 0..STEPS {
            if step == fault_at {
                match fault {
                    0 => io.fail_write_at(1 + rng.below(12) as u64),
                    1 => io.fail_sync_at(1 + rng.below(4) as u64),
                    2 => {
                        io.fill_at(1 + rng.below(12) as u64);
                        freed_at = Some(step + 3 + rng.below(15));
                    }
                    _ => {}
                }
            }
            if freed_at == Some(step) {
                io.set_full(false);
            }
            if !w.step(&mut rng) {
                break;
            }
        }
        w.settle();
        let ctx = format!("seed {seed}, fault {fault} at step {fault_at}");
        stats[0] += w.ops;
        stats[1] += w.acked_ops;
        let (model, alt) = (w.model.clone(), w.alt.clone());
        drop(w);
        let crashed = Rc::new(io.crash(crash_mode(&mut rng)));
        let mut w2 = World::open(crashed.clone(), model.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        check_either(&w2.user, &model, &alt).unwrap_or_else(|e| panic!("{ctx}, after the first loss: {e}"));
        // Second life: what recovery left must keep working, and survive
        // another loss (the defect where the second crash lost mail).
        if check(&w2.user, &model).is_err() {
            w2.model = alt.clone().expect("one of them held");
        }
        for _ in 0..STEPS {
            if !w2.step(&mut rng) {
                break;
            }
        }
        w2.settle();
        stats[2] += w2.ops;
        stats[3] += w2.acked_ops;
        let (model2, alt2) = (w2.model.clone(), w2.alt.clone());
        drop(w2);
        let crashed2 = Rc::new(crashed.crash(crash_mode(&mut rng)));
        let w3 = World::open(crashed2, model2.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        check_either(&w3.user, &model2, &alt2).unwrap_or_else(|e| panic!("{ctx}, after the second loss: {e}"));
    }
    // The runs did real work: most operations were acknowledged.
    assert!(stats[1] * 3 > stats[0] && stats[3] * 2 > stats[2], "too few acknowledged operations: {stats:?}");
}

/// The exact sequence from the hardening issue: expunge the newest message,
/// crash, append, crash: the append must survive (its bytes went where the
/// expunged message had been, and the old APPEND record for it, still in
/// the log, must not cut the log).
#[test]
fn append_after_expunging_the_newest_survives_a_second_crash() {
    for expunge_all in [false, true] {
        for mode in [CrashMode::KeepUnsynced, CrashMode::DropUnsynced] {
            let io = Rc::new(MemIo::new());
            let s = Store::new(io.clone(), Path::new("/mail"), settings());
            let u = s.user("u", 1_000).unwrap();
            let mb = u.mailbox("INBOX").unwrap();
            for i in 0..10 {
                mb.borrow_mut().append_bytes(format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes(), 0, 0, 0).unwrap();
            }
            s.block_on(u.durable(&mb)).unwrap();
            let doomed: Vec<u32> = if expunge_all { (1..=10).collect() } else { vec![10] };
            mb.borrow_mut().expunge(&doomed).unwrap();
            s.block_on(u.durable(&mb)).unwrap();
            drop((mb, u, s));
            let io2 = Rc::new(io.crash(mode));
            let s = Store::new(io2.clone(), Path::new("/mail"), settings());
            let u = s.user("u", 1_000).unwrap();
            let mb = u.mailbox("INBOX").unwrap();
            let uid = mb.borrow_mut().append_bytes(b"Subject: new\r\n\r\nthe new one\r\n", 0, 0, 0).unwrap();
            assert_eq!(uid, 11);
            s.block_on(u.durable(&mb)).unwrap();
            drop((mb, u, s));
            let io3 = Rc::new(io2.crash(mode));
            let s = Store::new(io3, Path::new("/mail"), settings());
            let mb = s.user("u", 1_000).unwrap().mailbox("INBOX").unwrap();
            let uids: Vec<u32> = mb.borrow().msgs().iter().map(|m| m.uid).collect();
            let want: Vec<u32> = if expunge_all { vec![11] } else { (1..=9).chain([11]).collect() };
            assert_eq!(uids, want, "expunge_all={expunge_all} {mode:?}");
            let m = *mb.borrow().find(11).unwrap();
            assert_eq!(mb.borrow().message(&m).unwrap().bytes(), b"Subject: new\r\n\r\nthe new one\r\n");
        }
    }
}

/// A full disk: APPEND is refused with a clear error and nothing half-made
/// stays; EXPUNGE still works (its log space is reserved) and gives the
/// space back at once by punching holes; after space returns, appends work
/// and nothing acknowledged is lost across restarts.
#[test]
fn a_full_disk_refuses_appends_and_expunge_gives_space_back() {
    let io = Rc::new(MemIo::new());
    let s = Store::new(io.clone(), Path::new("/mail"), settings());
    let u = s.user("u", 1_000).unwrap();
    let mb = u.mailbox("INBOX").unwrap();
    let big = |i: usize| format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(20_000)).into_bytes();
    for i in 0..8 {
        mb.borrow_mut().append_bytes(&big(i), 0, 0, 0).unwrap();
    }
    s.block_on(u.durable(&mb)).unwrap();
    let stored_before = io.stored_bytes();
    io.fill_at(1);
    let r = mb.borrow_mut().append_bytes(&big(99), 0, 0, 0);
    assert!(matches!(r, Err(StoreError::Full)), "{r:?}");
    assert!(!mb.borrow().is_poisoned(), "a full disk is not a broken disk");
    mb.borrow_mut().expunge(&[1, 2, 3, 4, 5, 6]).unwrap_or_else(|e| panic!("expunge on a full disk: {e}"));
    s.block_on(u.durable(&mb)).unwrap();
    s.block_on(s.housekeep(|| std::future::ready(())));
    let stored_after = io.stored_bytes();
    assert!(stored_after < stored_before / 2, "space given back: {stored_before} -> {stored_after}");
    io.set_full(false);
    let uid = mb.borrow_mut().append_bytes(&big(100), 0, 0, 0).unwrap();
    s.block_on(u.durable(&mb)).unwrap();
    drop((mb, u, s));
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        let s = Store::new(Rc::new(io.crash(mode)), Path::new("/mail"), settings());
        let mb = s.user("u", 1_000).unwrap().mailbox("INBOX").unwrap();
        let uids: Vec<u32> = mb.borrow().msgs().iter().map(|m| m.uid).collect();
        assert_eq!(uids, vec![7, 8, uid]);
        for m in mb.borrow().msgs() {
            assert!(mb.borrow().message(m).unwrap().bytes().starts_with(b"Subject: "));
        }
    }
}
