//! Mailbox tests: behaviour on a real directory, and crash tests through
//! the fault-injecting in-memory file system, checked against a model.

use super::*;
use crate::store::format::FlagChange;
use crate::store::io::{CrashMode, MemIo, OpenMode, RealIo};
use crate::store::mailbox::write::{Copied, FlagsChanged};
use std::collections::BTreeMap;

fn settings() -> Settings {
    Settings { segment_size: 64 * 1024, sync: SyncMode::Always, checkpoint_records: 50, ..Settings::default() }
}

fn msg(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: a{i}@example.com\r\nSubject: message {i}\r\n\r\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(format!("line {i} {}\r\n", m.len()).as_bytes());
    }
    m
}

fn contents(mb: &Mailbox) -> BTreeMap<u32, (Vec<u8>, u8)> {
    mb.msgs().iter().map(|m| (m.uid, (mb.message(m).unwrap().bytes().to_vec(), m.flags))).collect()
}

#[test]
fn append_is_invisible_until_commit_then_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let mut mb = Mailbox::create(io.clone(), &path, 77, settings()).unwrap();
    let uid = mb.append_bytes(&msg(1, 500), format::F_SEEN, 0, 1_700_000_000).unwrap();
    assert_eq!(uid, 1);
    assert_eq!(mb.exists(), 0, "not visible before it is durable");
    assert_eq!(mb.uidnext(), 1, "UIDNEXT does not run ahead of invisible messages");
    mb.commit().unwrap();
    assert_eq!(mb.exists(), 1);
    assert_eq!(mb.uidnext(), 2);
    let m = mb.msgs()[0];
    assert_eq!(mb.message(&m).unwrap().bytes(), &msg(1, 500)[..]);
    assert_eq!(mb.location(&m).internal_date, 1_700_000_000);
    assert!(!mb.cache(&m).unwrap().is_empty());
    drop(mb);
    let mb = Mailbox::open(io, &path, 77, settings()).unwrap();
    assert_eq!(mb.exists(), 1);
    assert_eq!(mb.msgs()[0].flags, format::F_SEEN);
    assert_eq!(mb.unseen(), 0);
}

/// An append's modseq is taken when it is staged and a STORE before its
/// commit takes a later one: both are changes since the modseq before them.
#[test]
fn changes_since_a_modseq_include_an_append_committed_after_a_later_store() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let mut mb = Mailbox::create(io, &dir.path().join("box"), 1, settings()).unwrap();
    mb.append_bytes(&msg(1, 200), 0, 0, 1).unwrap();
    mb.commit().unwrap();
    let before = mb.highest_modseq();
    let staged = mb.append_bytes(&msg(2, 200), 0, 0, 2).unwrap();
    mb.set_flags(1, format::F_SEEN, 0).unwrap();
    mb.commit().unwrap();
    assert_eq!(mb.flags_changed_since(before, |_| false).unwrap(), [1, staged]);
}

/// QRESYNC after a restart (RFC 7162 3.2.5.1): expunges, flag changes and
/// arrivals since the last checkpoint come back from the log with their
/// modseqs; from before the checkpoint there is no history, and the caller
/// falls back.
#[test]
fn expunge_history_survives_reopen_back_to_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let mut mb = Mailbox::create(io.clone(), &path, 1, settings()).unwrap();
    for i in 0..10 {
        mb.append_bytes(&msg(i, 200), 0, 0, i as i64).unwrap();
    }
    mb.commit().unwrap();
    mb.expunge(&[2]).unwrap();
    mb.commit().unwrap();
    mb.checkpoint().unwrap();
    let at_checkpoint = mb.highest_modseq();
    mb.expunge(&[4, 6]).unwrap();
    let between = mb.highest_modseq();
    mb.expunge(&[8]).unwrap();
    mb.set_flags(3, format::F_SEEN, 0).unwrap();
    let arrival = mb.append_bytes(&msg(99, 200), 0, 0, 99).unwrap();
    mb.commit().unwrap();
    drop(mb);
    let mb = Mailbox::open(io, &path, 1, settings()).unwrap();
    let after = |m: u64| mb.expunged_after_modseq(m);
    assert_eq!(after(at_checkpoint), Some(vec![4, 6, 8]));
    assert_eq!(after(between), Some(vec![8]));
    assert_eq!(after(mb.highest_modseq()), Some(vec![]));
    assert_eq!(after(at_checkpoint - 1), None, "before the checkpoint: no history");
    assert_eq!(mb.flags_changed_since(between, |_| false).unwrap(), [3, arrival], "flag changes and arrivals since the checkpoint come back too");
    assert!(mb.flags_changed_since(at_checkpoint - 1, |_| false).is_none());
    assert_eq!(mb.expunged_since(mb.version()).map(|u| u.count()), Some(0), "sessions do not see them as new");
}

#[test]
fn flags_expunge_checkpoint_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let mut mb = Mailbox::create(io.clone(), &path, 1, settings()).unwrap();
    for i in 0..120 {
        mb.append_bytes(&msg(i, 300 + i * 10), 0, 0, i as i64).unwrap();
        if i % 7 == 0 {
            mb.commit().unwrap();
        }
    }
    mb.commit().unwrap();
    let k = mb.keyword("$Junk", true).unwrap().unwrap();
    assert!(mb.set_flags(5, format::F_SEEN | format::F_DELETED, 1 << k).unwrap().is_some());
    assert_eq!(mb.set_flags(5, format::F_SEEN | format::F_DELETED, 1 << k).unwrap(), None, "no change, no modseq");
    assert_eq!(mb.expunge(&[7, 8, 1000]).unwrap(), vec![7, 8]);
    assert_eq!(mb.exists(), 118);
    assert_eq!(mb.unseen(), 117);
    assert_eq!(mb.deleted(), 1);
    let hms = mb.highest_modseq();
    mb.checkpoint().unwrap();
    mb.set_flags(6, format::F_FLAGGED, 0).unwrap();
    mb.commit().unwrap();
    let before = contents(&mb);
    drop(mb);
    let mb = Mailbox::open(io, &path, 1, settings()).unwrap();
    assert_eq!(contents(&mb), before);
    assert_eq!(mb.keywords(), &["$Junk".to_string()]);
    assert!(mb.highest_modseq() > hms);
    assert_eq!(mb.find(5).unwrap().keywords, 1 << k);
    assert!(mb.find(7).is_none());
}

/// A STORE over many messages is one FLAG RUNS record at one modseq (RFC
/// 7162 3.1), replayed at open to the same flags, modseqs and counts,
/// before and after a checkpoint folds it in.
#[test]
fn a_store_over_many_messages_is_one_record_at_one_modseq() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let big = Settings { checkpoint_records: 4096, ..settings() };
    let mut mb = Mailbox::create(io.clone(), &path, 1, big).unwrap();
    for i in 0..300 {
        mb.append_bytes(&msg(i, 100), if i % 3 == 0 { format::F_SEEN } else { 0 }, 0, i as i64).unwrap();
    }
    mb.commit().unwrap();
    mb.checkpoint().unwrap();
    let k = mb.keyword("$Label1", true).unwrap().unwrap();
    let all: Vec<u32> = (1..=300).collect();
    let (h, records) = (mb.highest_modseq(), mb.log.records);
    let FlagsChanged { modseq, changed, .. } = mb.change_flags(&all, FlagChange::add(format::F_SEEN, 1 << k)).unwrap();
    assert_eq!((modseq, changed.len(), mb.log.records), (h + 1, 300, records + 1), "one modseq, one record");
    assert!(mb.msgs().iter().all(|m| m.modseq == modseq && m.flags == format::F_SEEN));
    let odd: Vec<u32> = (1..=300).filter(|u| u % 2 == 1).collect();
    let changed = mb.change_flags(&odd, FlagChange::remove(format::F_SEEN, 0)).unwrap().changed;
    assert_eq!(changed, odd);
    let again = mb.change_flags(&odd, FlagChange::remove(format::F_SEEN, 0)).unwrap();
    assert_eq!((again.modseq, again.changed.len()), (0, 0), "nothing changes: no modseq");
    let done = mb.change_flags(&[9, 4, 4, 1, 1000], FlagChange::replace(format::F_DELETED, 0)).unwrap();
    assert_eq!((done.changed, done.missing), (vec![1, 4, 9], 1), "any order, repeats and missing UIDs");
    assert_eq!((mb.unseen(), mb.deleted()), (151, 3), "the odd ones, and 4");
    let deleted_size = mb.deleted_size();
    mb.commit().unwrap();
    let state = |mb: &Mailbox| -> Vec<(u32, u8, u64, u64)> { mb.msgs().iter().map(|m| (m.uid, m.flags, m.keywords, m.modseq)).collect() };
    let before = state(&mb);
    let highest = mb.highest_modseq();
    drop(mb);
    for round in ["replayed", "checkpointed"] {
        let mut mb = Mailbox::open(io.clone(), &path, 1, big).unwrap();
        assert_eq!(state(&mb), before, "{round}");
        assert_eq!((mb.unseen(), mb.deleted(), mb.deleted_size(), mb.highest_modseq()), (151, 3, deleted_size, highest), "{round}");
        if round == "replayed" {
            // The journal comes back from the log: the three changed by the
            // last STORE listed, the 150 odd ones as one unlisted change.
            assert_eq!(mb.flags_changed_since(h + 2, |_| false).unwrap(), [1, 4, 9]);
            assert_eq!(mb.flags_changed_since(h + 1, |_| false), None);
            assert_eq!(mb.flags_changed_since(h + 1, |m| m == h + 2).unwrap(), [1, 4, 9], "the STORE's own session knows of it");
        }
        mb.checkpoint().unwrap();
    }
}

/// COPY stores the original's bytes and its cache record as they are (no
/// parsing), into another mailbox or the same one, with one log record
/// each and nothing visible before the commit; a crash before it loses
/// only the unacknowledged copies.
#[test]
fn copies_take_the_originals_bytes_and_cache() {
    let io = Rc::new(MemIo::new());
    let dynio: Rc<dyn Io> = io.clone();
    let s = Settings { segment_size: 256 << 10, ..settings() };
    let mut a = Mailbox::create(dynio.clone(), Path::new("/m/a"), 1, s).unwrap();
    let mut b = Mailbox::create(dynio.clone(), Path::new("/m/b"), 2, s).unwrap();
    for i in 0..5 {
        a.append_bytes(&msg(i, 500 + i * 100), format::F_SEEN, 0, 1000 + i as i64).unwrap();
    }
    a.commit().unwrap();
    let copies = |from: &Mailbox| -> Vec<Copied> {
        from.msgs()
            .iter()
            .map(|m| Copied {
                message: from.message(m).unwrap(),
                cache: from.cache_unread(m).unwrap(),
                flags: m.flags,
                keywords: 0,
                internal_date: from.location(m).internal_date,
            })
            .collect()
    };
    let records = b.log.records;
    assert_eq!(b.append_copies(&copies(&a)).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(b.log.records, records + 5);
    assert_eq!(b.exists(), 0, "invisible before the commit");
    b.commit().unwrap();
    let same = copies(&a);
    assert_eq!(a.append_copies(&same).unwrap(), [6, 7, 8, 9, 10], "into the mailbox they are in");
    // Power loss before a's commit: b's copies were acknowledged, a's were not.
    let crashed: Rc<dyn Io> = Rc::new(io.crash(CrashMode::DropUnsynced));
    let a2 = Mailbox::open(crashed.clone(), Path::new("/m/a"), 1, s).unwrap();
    let b2 = Mailbox::open(crashed, Path::new("/m/b"), 2, s).unwrap();
    assert_eq!(a2.exists(), 5);
    for (o, c) in a2.msgs().iter().zip(b2.msgs()) {
        assert_eq!(b2.message(c).unwrap().bytes(), a2.message(o).unwrap().bytes());
        assert_eq!(b2.cache(c).unwrap().bytes(), a2.cache(o).unwrap().bytes(), "the cache record is the original's");
        assert_eq!((c.flags, b2.location(c).internal_date), (o.flags, a2.location(o).internal_date));
    }
    a.commit().unwrap();
    assert_eq!(a.exists(), 10);
    assert_eq!(a.cache(a.find(7).unwrap()).unwrap().bytes(), a.cache(a.find(2).unwrap()).unwrap().bytes());
}

#[test]
fn streamed_appends_interleave() {
    let io: Rc<dyn Io> = Rc::new(MemIo::new());
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(io.clone(), path, 3, settings()).unwrap();
    let a = msg(1, 3000);
    let b = msg(2, 2000);
    let mut ha = mb.begin_append(a.len() as u64).unwrap();
    let mut hb = mb.begin_append(b.len() as u64).unwrap();
    let (mut ca, mut cb) = (a.chunks(100), b.chunks(70));
    loop {
        let (x, y) = (ca.next(), cb.next());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(x) = x {
            mb.append_chunk(&mut ha, x).unwrap();
        }
        if let Some(y) = y {
            mb.append_chunk(&mut hb, y).unwrap();
        }
    }
    assert!(mb.append_chunk(&mut hb, b"x").is_err(), "more than announced is refused");
    let ub = mb.finish_append(hb, 0, 0, 0).unwrap();
    let ua = mb.finish_append(ha, 0, 0, 0).unwrap();
    assert_eq!((ub, ua), (1, 2));
    mb.commit().unwrap();
    assert_eq!(mb.message(mb.find(1).unwrap()).unwrap().bytes(), &b[..]);
    assert_eq!(mb.message(mb.find(2).unwrap()).unwrap().bytes(), &a[..]);
    let short = mb.begin_append(10).unwrap();
    assert!(mb.finish_append(short, 0, 0, 0).is_err(), "fewer bytes than announced is refused");
}

#[test]
fn large_messages_get_their_own_segment() {
    let io: Rc<dyn Io> = Rc::new(MemIo::new());
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(io.clone(), path, 3, settings()).unwrap();
    let big = msg(1, 200 * 1024);
    mb.append_bytes(&msg(0, 100), 0, 0, 0).unwrap();
    mb.append_bytes(&big, 0, 0, 0).unwrap();
    mb.append_bytes(&msg(2, 100), 0, 0, 0).unwrap();
    mb.commit().unwrap();
    assert_eq!(mb.message(mb.find(2).unwrap()).unwrap().bytes(), &big[..]);
    drop(mb);
    let mb = Mailbox::open(io, path, 3, settings()).unwrap();
    assert_eq!(mb.exists(), 3);
}

#[test]
fn compaction_reclaims_and_keeps_live_messages() {
    let io = Rc::new(MemIo::new());
    let dynio: Rc<dyn Io> = io.clone();
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(dynio.clone(), path, 3, settings()).unwrap();
    for i in 0..60 {
        // RFC 8514: each is saved at its own time, not at its INTERNALDATE.
        io.set_now(1_000 + i as i64);
        mb.append_bytes(&msg(i, 4000), 0, 0, 0).unwrap();
    }
    mb.commit().unwrap();
    io.set_now(5_000);
    let saved = |mb: &Mailbox| -> Vec<i64> { mb.msgs().iter().map(|m| mb.save_date(m).unwrap()).collect() };
    let held = mb.message(mb.find(1).unwrap()).unwrap();
    let doomed: Vec<u32> = (1..=60).filter(|u| u % 3 != 0).collect();
    mb.expunge(&doomed).unwrap();
    mb.set_flags(3, format::F_FLAGGED, 0).unwrap();
    let before = contents(&mb);
    let dates = saved(&mb);
    assert_eq!(dates[0], 1_002, "UID 3 was saved third");
    let segs_before = dynio.read_dir(&path.join("segments")).unwrap().len();
    while !mb.compact_step(10_000).unwrap() {}
    assert_eq!(contents(&mb), before);
    assert_eq!(saved(&mb), dates, "moved messages keep their save dates");
    assert!(mb.needs_checkpoint(), "the moves are recorded by a checkpoint");
    mb.checkpoint().unwrap();
    assert!(dynio.read_dir(&path.join("segments")).unwrap().len() < segs_before);
    assert_eq!(held.bytes(), &msg(0, 4000)[..], "a reader keeps its old mapping");
    drop(mb);
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
        let mb = Mailbox::open(crashed, path, 3, settings()).unwrap();
        assert_eq!(contents(&mb), before);
        assert_eq!(saved(&mb), dates);
    }
}

/// Under constant APPEND load there is always an append waiting for its
/// sync; compaction must still finish, its checkpoint must wait for a
/// commit in flight (whose files the index must not get ahead of), and a
/// commit publishes exactly what it covered.
#[test]
fn compaction_finishes_while_appends_wait_for_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let mut mb = Mailbox::create(io.clone(), &path, 5, settings()).unwrap();
    for i in 0..40 {
        mb.append_bytes(&msg(i, 4000), 0, 0, 0).unwrap();
    }
    mb.commit().unwrap();
    mb.expunge(&(1..=30).collect::<Vec<_>>()).unwrap();
    mb.commit().unwrap();
    // An append whose group commit is in flight (files handed to the sync
    // threads), and one staged after it.
    let first = mb.append_bytes(&msg(100, 900), 0, 0, 0).unwrap();
    let mut batch = mb.begin_commit(true);
    let second = mb.append_bytes(&msg(101, 900), 0, 0, 0).unwrap();
    let mut steps = 0;
    while !mb.compact_step(10_000).unwrap() {
        let extra = mb.append_bytes(&msg(200 + steps, 900), 0, 0, 0).unwrap();
        assert!(mb.find(extra).is_none(), "staged, not yet visible");
        steps += 1;
        assert!(steps < 100, "compaction does not finish");
    }
    assert!(mb.begin_checkpoint(true).is_none(), "no checkpoint while a commit is in flight");
    // The in-flight batch ends: it covered only `first`.
    for r in crate::store::exec::block_on(io.run(batch.take_tasks())) {
        r.unwrap();
    }
    mb.end_commit(batch, &Ok(()));
    assert!(mb.find(first).is_some() && mb.find(second).is_none());
    assert!(mb.needs_checkpoint());
    mb.checkpoint().unwrap();
    assert!(mb.find(second).is_some() && !mb.has_staged());
    let live = contents(&mb);
    assert_eq!(live.len(), 10 + 2 + steps);
    drop(mb);
    let reopened = Mailbox::open(io, &path, 5, settings()).unwrap();
    assert_eq!(contents(&reopened), live);
}

#[test]
fn corrupt_index_is_rebuilt_from_segments() {
    let io = Rc::new(MemIo::new());
    let dynio: Rc<dyn Io> = io.clone();
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(dynio.clone(), path, 9, settings()).unwrap();
    for i in 0..10 {
        mb.append_bytes(&msg(i, 700), 0, 0, 0).unwrap();
    }
    mb.commit().unwrap();
    mb.checkpoint().unwrap();
    let before: Vec<_> = contents(&mb).into_iter().map(|(u, (b, _))| (u, b)).collect();
    drop(mb);
    let f = dynio.open(&path.join("index"), OpenMode::Existing).unwrap();
    f.write_at(b"garbage!", 100).unwrap();
    let mb = Mailbox::open(dynio, path, 9, settings()).unwrap();
    let after: Vec<_> = contents(&mb).into_iter().map(|(u, (b, _))| (u, b)).collect();
    assert_eq!(after, before);
    assert_eq!(mb.uidvalidity(), 9);
}

/// The model of what clients were told: acknowledged messages and the
/// flags last acknowledged for them.
#[derive(Default, Clone)]
struct Model {
    acked: BTreeMap<u32, Vec<u8>>,
    /// Every payload ever written, acknowledged or not.
    written: Vec<Vec<u8>>,
    expunged: Vec<u32>,
}

fn run_workload(mb: &mut Mailbox, model: &mut Model, seed: u64, steps: usize) {
    let mut r = seed | 1;
    let mut rnd = move || {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        r
    };
    let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
    for step in 0..steps {
        match rnd() % 10 {
            0..=5 => {
                let body = msg(step + (seed as usize % 1000) * 1000, 100 + (rnd() % 3000) as usize);
                model.written.push(body.clone());
                match mb.append_bytes(&body, 0, 0, step as i64) {
                    Ok(uid) => pending.push((uid, body)),
                    Err(_) => return,
                }
            }
            6 | 7 => {
                // Group commit: everything pending becomes acknowledged at once.
                if mb.commit().is_err() {
                    return;
                }
                for (uid, body) in pending.drain(..) {
                    model.acked.insert(uid, body);
                }
            }
            8 => {
                if let Some(&uid) = model.acked.keys().nth((rnd() % 7) as usize) {
                    if mb.expunge(&[uid]).is_err() {
                        return;
                    }
                    model.expunged.push(uid);
                }
            }
            _ => {
                if let Some(&uid) = model.acked.keys().next() {
                    if mb.set_flags(uid, format::F_SEEN, 0).is_err() {
                        return;
                    }
                }
                if mb.needs_checkpoint() && mb.checkpoint().is_err() {
                    return;
                }
            }
        }
    }
}

fn verify(mb: &Mailbox, model: &Model, context: &str) {
    let got = contents(mb);
    for (uid, body) in &model.acked {
        if model.expunged.contains(uid) {
            continue;
        }
        let Some((b, _)) = got.get(uid) else { panic!("{context}: acknowledged uid {uid} lost") };
        assert_eq!(b, body, "{context}: uid {uid} bytes differ");
    }
    for (uid, (b, _)) in &got {
        assert!(model.written.iter().any(|w| w == b), "{context}: uid {uid} holds bytes nobody wrote (half-visible message)");
    }
    // Nothing acknowledged may come back with a reused UID: UIDs stay ordered.
    let uids: Vec<_> = got.keys().copied().collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn crash_at_any_write_or_sync_loses_nothing_acknowledged() {
    let path = Path::new("/m/box");
    let mut cases = 0;
    let mut faulted = 0;
    let mut lost_unacked = 0;
    for seed in 1..=40u64 {
        for fail_kind in 0..3 {
            for fail_at in [1u64, 2, 3, 5, 8, 13, 21, 34, 55, 89] {
                let io = Rc::new(MemIo::new());
                let dynio: Rc<dyn Io> = io.clone();
                let mut mb = Mailbox::create(dynio, path, 5, settings()).unwrap();
                let mut model = Model::default();
                // Some history first, then the fault.
                run_workload(&mut mb, &mut model, seed, 30);
                match fail_kind {
                    0 => io.fail_write_at(fail_at),
                    1 => io.fail_sync_at(fail_at),
                    _ => {}
                }
                run_workload(&mut mb, &mut model, seed * 7919, 60);
                model.written.push(b"x".to_vec());
                if mb.append_bytes(b"x", 0, 0, 0).is_err() {
                    faulted += 1;
                }
                drop(mb);
                for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Random(seed * 31 + fail_at)] {
                    let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
                    let ctx = format!("seed {seed} fail {fail_kind}@{fail_at} {mode:?}");
                    let mut mb = Mailbox::open(crashed.clone(), path, 5, settings()).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                    verify(&mb, &model, &ctx);
                    if (mb.exists() as usize) < model.written.len() - model.expunged.len() {
                        lost_unacked += 1;
                    }
                    // The recovered mailbox keeps working and stays consistent across another reopen.
                    let mut m2 = model.clone();
                    run_workload(&mut mb, &mut m2, seed + 1, 20);
                    mb.commit().unwrap();
                    drop(mb);
                    let mb = Mailbox::open(crashed, path, 5, settings()).unwrap();
                    verify(&mb, &m2, &format!("{ctx} (second life)"));
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 40 * 3 * 10 * 3);
    // The faults really fired (every write/sync fault case), and crashes
    // really dropped unacknowledged data, so the checks above meant something.
    assert!(faulted >= 40 * 2 * 7, "faults fired in only {faulted} cases");
    assert!(lost_unacked > 100, "crashes dropped unsynced appends in {lost_unacked} cases");
}

proptest::proptest! {
    /// The galloping finder answers what a binary search answers, for UIDs
    /// asked in any order (ascending is its fast path, not its contract),
    /// from any starting position (one kept from before the mailbox
    /// changed, `Mailbox::find_from`).
    #[test]
    fn the_finder_finds_what_a_binary_search_finds(
        uids in proptest::collection::btree_set(1u32..500, 0..120),
        asks in proptest::collection::vec(0u32..510, 0..200),
        sorted in proptest::bool::ANY,
        start in 0usize..130,
    ) {
        let msgs: Vec<Msg> = uids.iter().map(|&uid| Msg { uid, flags: 0, keywords: 0, modseq: 1, loc: 0 }).collect();
        let mut asks = asks;
        if sorted {
            asks.sort_unstable();
        }
        let mut f = Finder { msgs: &msgs, at: start };
        for u in asks {
            let want = msgs.binary_search_by_key(&u, |m| m.uid).ok().map(|i| &msgs[i]);
            proptest::prop_assert_eq!(f.find(u), want, "uid {}", u);
        }
    }
}

/// A MULTIAPPEND's messages are stored together: consecutive UIDs, and a
/// write failing on any of them (a record header, a cache record, the one
/// log write) stores none, before or after a crash (RFC 3502 6).
#[test]
fn appended_together_or_not_at_all() {
    let path = std::path::Path::new("/multi");
    let batch = |mb: &mut Mailbox, n: usize| -> Vec<(crate::store::AppendHandle, u8, u64, i64)> {
        (0..n)
            .map(|i| {
                let data = msg(i, 300 + 100 * i);
                let mut h = mb.begin_append(data.len() as u64).unwrap();
                mb.append_chunk(&mut h, &data).unwrap();
                (h, if i == 0 { format::F_SEEN } else { 0 }, 0, 1_000 + i as i64)
            })
            .collect()
    };
    for fail in 1.. {
        let io = Rc::new(MemIo::new());
        let mut mb = Mailbox::create(io.clone(), path, 5, settings()).unwrap();
        let b = batch(&mut mb, 3);
        assert_eq!(mb.finish_appends(b).unwrap(), vec![1, 2, 3]);
        mb.commit().unwrap();
        let b = batch(&mut mb, 3);
        // The n-th write finishing the second batch fails, and all after it.
        io.fail_write_at(fail);
        let done = mb.finish_appends(b);
        if let Ok(uids) = done {
            assert_eq!(uids, vec![4, 5, 6], "no write failed");
            break;
        }
        assert_eq!(mb.exists(), 3, "fault at write {fail}: none of the batch");
        drop(mb);
        for mode in [CrashMode::KeepUnsynced, CrashMode::DropUnsynced] {
            let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
            let mut mb = Mailbox::open(crashed, path, 5, settings()).unwrap();
            assert_eq!(mb.exists(), 3, "fault at write {fail}, {mode:?}: none of the batch after a crash");
            assert_eq!(mb.msgs()[0].flags, format::F_SEEN);
            let b = batch(&mut mb, 2);
            let uids = mb.finish_appends(b).unwrap();
            assert!(uids[0] >= 4 && uids[1] == uids[0] + 1, "{uids:?}");
            mb.commit().unwrap();
            assert_eq!(mb.exists(), 5);
        }
        assert!(fail < 100, "the batch should have succeeded by now");
    }
}

/// Cache records an older build wrote are made again in the background
/// once a reader meets one (the store format upgrade of docs/store-format.md):
/// no message moves, the new records are what a fresh analysis gives, the
/// save dates stay, and a crash at any point leaves every message readable
/// with a cache of one version or the other.
#[test]
fn outdated_caches_are_rewritten_in_the_background() {
    let io = Rc::new(MemIo::new());
    let dynio: Rc<dyn Io> = io.clone();
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(dynio.clone(), path, 4, settings()).unwrap();
    for i in 0..30 {
        io.set_now(2_000 + i as i64);
        mb.append_bytes(&msg(i, 1500), 0, 0, 0).unwrap();
    }
    mb.commit().unwrap();
    // What an older build left: version 5 caches for every other message,
    // none at all for one.
    let mut planted = Vec::new();
    for m in mb.msgs().to_vec().into_iter().filter(|m| m.uid % 2 == 0) {
        let v5 = crate::mime::tests::as_version_5(&crate::mime::analyze(mb.message(&m).unwrap().bytes()));
        let saved = mb.save_date(&m).unwrap();
        let mut loc = mb.location(&m);
        (loc.cache_segment, loc.cache_offset) = mb.write_cache(m.uid, &v5, saved).unwrap();
        loc.cache_length = v5.len() as u32;
        if m.uid == 4 {
            loc.cache_segment = 0;
        }
        planted.push((m.uid, loc));
    }
    for (uid, loc) in planted {
        let i = mb.msgs.binary_search_by_key(&uid, |m| m.uid).unwrap();
        let m = mb.msgs[i];
        mb.appended.push(Rec::new(uid, loc, m.flags, m.keywords, m.modseq));
        mb.msgs[i].loc = (mb.appended.len() - 1) as u32 | NEW;
    }
    mb.checkpoint().unwrap();
    let current = |mb: &Mailbox| mb.msgs().iter().filter(|m| crate::mime::Cache::is_current(mb.cache(m).unwrap().bytes())).count();
    let saved = |mb: &Mailbox| -> Vec<i64> { mb.msgs().iter().map(|m| mb.save_date(m).unwrap()).collect() };
    let (before, dates) = (contents(&mb), saved(&mb));
    let located: Vec<(u32, u64)> = mb.msgs().iter().map(|m| (mb.location(m).segment, mb.location(m).offset)).collect();
    drop(mb);

    let mut mb = Mailbox::open(dynio.clone(), path, 4, settings()).unwrap();
    assert!(!mb.compaction_due(), "nothing is scanned when the mailbox opens");
    assert_eq!(current(&mb), 15, "a reader meets the old ones");
    assert!(mb.compaction_due());
    let mut slices = 0;
    while !mb.compact_step(1_000).unwrap() {
        slices += 1;
    }
    assert!(slices > 2, "in slices: {slices}");
    assert_eq!(current(&mb), 30);
    for m in mb.msgs() {
        assert_eq!(mb.cache(m).unwrap().bytes(), &crate::mime::analyze(mb.message(m).unwrap().bytes())[..]);
    }
    assert_eq!(contents(&mb), before);
    assert_eq!(saved(&mb), dates, "remade caches keep their save dates");
    assert_eq!(mb.msgs().iter().map(|m| (mb.location(m).segment, mb.location(m).offset)).collect::<Vec<_>>(), located, "no message moved");
    assert!(!mb.compaction_due(), "done");

    // A crash before the checkpoint recording the new records: the old
    // ones are still there and used.
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
        let old = Mailbox::open(crashed, path, 4, settings()).unwrap();
        assert_eq!(contents(&old), before);
        assert_eq!(current(&old), 15);
    }
    assert!(mb.needs_checkpoint(), "the new records are recorded by a checkpoint");
    mb.checkpoint().unwrap();
    mb.reclaim_space(64);
    drop(mb);
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
        let mut mb = Mailbox::open(crashed, path, 4, settings()).unwrap();
        assert_eq!(contents(&mb), before);
        assert_eq!(saved(&mb), dates);
        assert_eq!(current(&mb), 30);
        assert!(!mb.compaction_due());
    }
}

/// The shared UID list follows every arrival (extended, not made anew)
/// and every expunge, and a list a session holds stays as it was.
#[test]
fn the_shared_uid_list_follows_arrivals_and_expunges() {
    let io: Rc<dyn Io> = Rc::new(MemIo::new());
    let mut mb = Mailbox::create(io, Path::new("/box"), 1, Settings { segment_size: 256 << 10, ..Settings::default() }).unwrap();
    let mut held = Vec::new();
    for round in 0..40usize {
        for i in 0..(round * 37) % 300 {
            mb.append_bytes(&msg(round * 1000 + i, 60), 0, 0, 1).unwrap();
        }
        mb.commit().unwrap();
        if round % 5 == 4 {
            let doomed: Vec<u32> = mb.msgs().iter().map(|m| m.uid).filter(|u| u % 7 == round as u32 % 7).collect();
            mb.expunge(&doomed).unwrap();
        }
        let now: Vec<u32> = mb.msgs().iter().map(|m| m.uid).collect();
        let list = mb.uids();
        assert_eq!(list.iter().collect::<Vec<_>>(), now, "round {round}");
        held.push((list, now));
        for (list, then) in &held {
            assert_eq!(&list.iter().collect::<Vec<_>>(), then, "a list held since an earlier round changed");
        }
    }
}

/// After a clean stop no segment is looked at for dead space when the
/// mailbox opens again (a million-message mailbox is not walked for it
/// again and again); after a stop between an expunge and its reclamation
/// the segments holding the dead messages are. Real files: the file
/// system tells how much of each it holds.
#[test]
fn only_segments_holding_dead_space_are_looked_at_when_a_mailbox_opens() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let path = dir.path().join("box");
    let held = || -> u64 { std::fs::read_dir(path.join("segments")).unwrap().map(|e| e.unwrap().metadata().unwrap().blocks() * 512).sum() };
    let mut mb = Mailbox::create(io.clone(), &path, 1, settings()).unwrap();
    for i in 0..12 {
        mb.append_bytes(&msg(i, 20_000), 0, 0, 1).unwrap();
    }
    mb.commit().unwrap();
    mb.checkpoint().unwrap();
    drop(mb);
    let mut mb = Mailbox::open(io.clone(), &path, 1, settings()).unwrap();
    assert!(!mb.wants_reclaim(), "every block held is live: nothing to look at");
    let doomed: Vec<u32> = mb.msgs().iter().map(|m| m.uid).filter(|u| u % 2 == 0).collect();
    mb.expunge(&doomed).unwrap();
    mb.commit().unwrap();
    mb.checkpoint().unwrap();
    drop(mb);
    let mut mb = Mailbox::open(io.clone(), &path, 1, settings()).unwrap();
    assert!(mb.wants_reclaim(), "the dead messages' segments are looked at");
    let before = held();
    mb.reclaim_space(64);
    let punched = held() < before;
    drop(mb);
    let mb = Mailbox::open(io, &path, 1, settings()).unwrap();
    assert_eq!(mb.wants_reclaim(), !punched, "once the space is given back, nothing is looked at again");
    assert_eq!(mb.exists(), 6);
}

/// `ringmail import`: messages keep their source's UIDs (with gaps) and
/// the source's UIDNEXT, through a power loss and through a checkpoint.
#[test]
fn imported_uids_and_a_raised_uidnext_survive_power_loss_and_checkpoints() {
    let io = Rc::new(MemIo::new());
    let path = Path::new("/m/box");
    let mut mb = Mailbox::create(io.clone(), path, 9, settings()).unwrap();
    let mut batch = Vec::new();
    for (i, uid) in [4u32, 9, 10].into_iter().enumerate() {
        let mut h = mb.begin_append(msg(i, 300).len() as u64).unwrap();
        mb.append_chunk(&mut h, &msg(i, 300)).unwrap();
        batch.push((h, uid, 0, 0, 1_600_000_000 + i as i64));
    }
    assert_eq!(mb.finish_with_uids(batch).unwrap(), [4, 9, 10]);
    mb.raise_uidnext(42).unwrap();
    mb.commit().unwrap();
    assert_eq!(mb.uidnext(), 42);
    // A UID below UIDNEXT is refused: UIDs are never given twice (RFC 9051 2.3.1.1).
    let mut h = mb.begin_append(3).unwrap();
    mb.append_chunk(&mut h, b"abc").unwrap();
    assert!(mb.finish_with_uids(vec![(h, 41, 0, 0, 0)]).is_err());
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        let crashed: Rc<dyn Io> = Rc::new(io.crash(mode));
        let mut again = Mailbox::open(crashed.clone(), path, 9, settings()).unwrap();
        assert_eq!(again.msgs().iter().map(|m| m.uid).collect::<Vec<_>>(), [4, 9, 10]);
        assert_eq!(again.uidnext(), 42, "the UIDNEXT record replays");
        assert_eq!(again.append_bytes(b"x\r\n", 0, 0, 0).unwrap(), 42);
        again.commit().unwrap();
        again.checkpoint().unwrap();
        let after = Mailbox::open(crashed, path, 9, settings()).unwrap();
        assert_eq!(after.uidnext(), 43, "kept by the index after a checkpoint");
    }
}
