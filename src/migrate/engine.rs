//! One import run: for each mailbox of the source, make sure the target
//! has it (with the source's UIDVALIDITY when it can), work out what is new,
//! what changed and what is gone since the last run, then store the new
//! messages in durable batches while readers fetch the next ones.
//!
//! UIDs are kept when the target mailbox has the source's UIDVALIDITY
//! (new, or filled from the same source before); then the source's UIDNEXT
//! is kept too, and a later run mirrors the source's flag changes and
//! expunges of what it imported (the source wins: it is what is being
//! moved away from). Otherwise messages get the target's next UIDs and only
//! new ones are added later.

use std::collections::{HashMap, HashSet};

use super::model::{
    content_hash, normalize_line_ends, Digest, Incoming, Listing, Op, Reader, Reply, Since, Source, SourceBox, SourceMsg, TargetBox, TargetList,
};
use super::progress::Progress;
use super::state::{BoxState, State};
use super::target::Target;
use crate::store::mailbox::MAX_KEYWORDS;

#[derive(Debug, Clone)]
pub struct Options {
    /// List what would be done; change nothing.
    pub dry_run: bool,
    /// Afterwards compare every message's UID, flags, size and content hash
    /// with the source.
    pub verify: bool,
    /// Readers fetching at once (IMAP connections).
    pub jobs: usize,
    /// A batch (one durable commit) ends at this many bytes…
    pub batch_bytes: u64,
    /// …or this many messages.
    pub batch_msgs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { dry_run: false, verify: false, jobs: 4, batch_bytes: 32 << 20, batch_msgs: 5000 }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub mailboxes: usize,
    /// Mailboxes that kept the source's UIDVALIDITY and UIDs.
    pub kept_uids: usize,
    pub messages: u64,
    pub bytes: u64,
    /// Messages stored under another UID than the source's (the target
    /// mailbox had other mail).
    pub renumbered: u64,
    pub flags_updated: u64,
    pub expunged: u64,
    /// Messages that could not be read or stored: one line each.
    pub skipped: Vec<String>,
    /// Differences --verify found: one line each.
    pub mismatches: Vec<String>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.skipped.is_empty() && self.mismatches.is_empty()
    }
}

/// What to do in one mailbox.
struct Plan {
    source: SourceBox,
    /// The target keeps the source's UIDs.
    keep: bool,
    new: Vec<SourceMsg>,
    flags: Vec<(u32, u8, Vec<String>)>,
    expunge: Vec<u32>,
    /// The source's highest UID seen.
    last_uid: u32,
    /// Keywords left off because the mailbox has no room for them.
    dropped_keywords: Vec<String>,
}

fn call(target: &mut dyn Target, op: Op) -> Result<Reply, String> {
    target.call(op, Vec::new())
}

fn state_of(reply: Reply) -> Result<TargetList, String> {
    match reply {
        Reply::State(s) => Ok(s),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn same_keywords(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| -> HashSet<String> { v.iter().map(|k| k.to_ascii_lowercase()).collect() };
    norm(a) == norm(b)
}

/// Imports everything `source` has into `user`'s mailboxes.
pub fn run(source: &dyn Source, target: &mut dyn Target, user: &str, state: &mut State, opts: &Options, progress: &mut Progress) -> Result<Summary, String> {
    let src_id = source.id();
    let boxes = source.mailboxes()?;
    let mut readers: Vec<Box<dyn Reader>> = Vec::new();
    for _ in 0..opts.jobs.max(1) {
        readers.push(source.reader()?);
    }
    let existing = match call(target, Op::Mailboxes { user: user.into() })? {
        Reply::Mailboxes(b) => b,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let mut summary = Summary::default();
    let mut plans = Vec::new();
    for sb in boxes {
        if sb.noselect {
            continue;
        }
        summary.mailboxes += 1;
        let prev = state.get(&sb.name, &src_id, sb.uidvalidity).cloned();
        // A mailbox that cannot be made or listed is reported; the others go on.
        let mut prepared = || -> Result<(TargetList, Listing, bool), String> {
            let tl = if opts.dry_run {
                dry_state(target, user, &sb, &existing)?
            } else {
                let op = Op::Prepare {
                    user: user.into(),
                    mailbox: sb.name.clone(),
                    uidvalidity: sb.uidvalidity,
                    special_use: sb.special_use.clone(),
                    subscribe: sb.subscribed,
                };
                state_of(call(target, op)?)?
            };
            let keep = sb.uidvalidity.is_some() && Some(tl.uidvalidity) == sb.uidvalidity;
            let since = prev.as_ref().filter(|_| keep).map(|p| Since { last_uid: p.last_uid, modseq: p.modseq });
            Ok((tl, readers[0].list(&sb, since)?, keep))
        };
        match prepared() {
            Ok((tl, listing, keep)) => {
                summary.kept_uids += usize::from(keep);
                let p = plan(sb, keep, prev.as_ref(), &listing, &tl);
                for k in &p.dropped_keywords {
                    let line = format!("{}: keyword {k} not kept (a mailbox holds at most {MAX_KEYWORDS})", p.source.name);
                    progress.say(&format!("skipped: {line}"));
                    summary.skipped.push(line);
                }
                plans.push(p);
            }
            Err(e) => {
                let line = format!("{}: the whole mailbox: {e}", sb.name);
                progress.say(&format!("skipped: {line}"));
                summary.skipped.push(line);
            }
        }
    }
    progress.set_total(plans.iter().map(|p| p.new.len() as u64).sum(), plans.iter().flat_map(|p| &p.new).map(|m| m.size).sum());
    for p in plans.iter() {
        if opts.dry_run {
            summary.messages += p.new.len() as u64;
            summary.bytes += p.new.iter().map(|m| m.size).sum::<u64>();
            summary.flags_updated += p.flags.len() as u64;
            summary.expunged += p.expunge.len() as u64;
            progress.say(&format!(
                "{}: would store {} messages, update flags of {}, expunge {}; UIDs {}",
                p.source.name,
                p.new.len(),
                p.flags.len(),
                p.expunge.len(),
                if p.keep { "kept" } else { "new" }
            ));
            continue;
        }
        apply_plan(p, &src_id, target, user, state, &mut readers, opts, progress, &mut summary)?;
    }
    progress.finish();
    if opts.verify && !opts.dry_run {
        for p in &plans {
            verify(&p.source, p.keep, target, user, &mut readers, opts, &mut summary)?;
        }
    }
    Ok(summary)
}

/// What a --dry-run compares with: the target mailbox as it is, or as a
/// new one would be.
fn dry_state(target: &mut dyn Target, user: &str, sb: &SourceBox, existing: &[TargetBox]) -> Result<TargetList, String> {
    match existing.iter().find(|b| b.name == sb.name && !b.noselect) {
        Some(_) => {
            let mut tl = state_of(call(target, Op::List { user: user.into(), mailbox: sb.name.clone() })?)?;
            if tl.uidnext == 1 {
                tl.uidvalidity = sb.uidvalidity.unwrap_or(tl.uidvalidity);
            }
            Ok(tl)
        }
        None => Ok(TargetList { uidvalidity: sb.uidvalidity.unwrap_or(0), uidnext: 1, ..Default::default() }),
    }
}

fn plan(source: SourceBox, keep: bool, prev: Option<&BoxState>, listing: &Listing, tl: &TargetList) -> Plan {
    let floor = prev.map_or(0, |p| p.last_uid);
    let in_target: HashMap<u32, (u8, u64)> = tl.msgs.iter().map(|&(u, f, k)| (u, (f, k))).collect();
    // Keywords the mailbox has, and room for as many more as it takes.
    let mut known: HashSet<String> = tl.keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    let mut dropped = Vec::new();
    let mut fit = |kw: &[String]| -> Vec<String> {
        kw.iter()
            .filter(|k| {
                let lower = k.to_ascii_lowercase();
                if known.contains(&lower) || known.len() < MAX_KEYWORDS {
                    known.insert(lower);
                    return true;
                }
                if !dropped.contains(*k) {
                    dropped.push(k.to_string());
                }
                false
            })
            .cloned()
            .collect()
    };
    let new: Vec<SourceMsg> = listing
        .msgs
        .iter()
        .filter(|m| m.uid > floor && !(keep && in_target.contains_key(&m.uid)))
        .map(|m| SourceMsg { keywords: fit(&m.keywords), ..m.clone() })
        .collect();
    let (mut flags, mut expunge) = (Vec::new(), Vec::new());
    if keep && prev.is_some() {
        for m in listing.msgs.iter().filter(|m| m.uid <= floor) {
            if let Some(&(f, k)) = in_target.get(&m.uid) {
                let keywords = fit(&m.keywords);
                if f != m.flags || !same_keywords(&tl.keyword_names(k), &keywords) {
                    flags.push((m.uid, m.flags, keywords));
                }
            }
        }
        let present: HashSet<u32> = match &listing.all_uids {
            Some(all) => all.iter().copied().collect(),
            None => listing.msgs.iter().map(|m| m.uid).collect(),
        };
        expunge = tl.msgs.iter().map(|m| m.0).filter(|&u| u <= floor && !present.contains(&u)).collect();
    }
    let last_uid = listing.msgs.iter().map(|m| m.uid).chain(listing.all_uids.iter().flatten().copied()).max().unwrap_or(0).max(floor);
    Plan { source, keep, new, flags, expunge, last_uid, dropped_keywords: dropped }
}

/// Fetches `chunks` with all readers at once, handing each chunk's bodies
/// to `each` in order (reader k fetches chunks k, k+n, …; a bounded
/// channel per reader keeps memory to a few batches).
fn fetch_in_order<E>(
    readers: &mut [Box<dyn Reader>],
    sb: &SourceBox,
    chunks: &[&[SourceMsg]],
    mut each: impl FnMut(&[SourceMsg], Vec<Result<Vec<u8>, String>>) -> Result<(), E>,
) -> Result<(), E> {
    let n = readers.len().min(chunks.len()).max(1);
    std::thread::scope(|scope| {
        let mut rxs = Vec::with_capacity(n);
        for (k, reader) in readers.iter_mut().take(n).enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rxs.push(rx);
            let mine: Vec<&[SourceMsg]> = chunks.iter().skip(k).step_by(n).copied().collect();
            scope.spawn(move || {
                for c in mine {
                    if tx.send(reader.fetch(sb, c)).is_err() {
                        break;
                    }
                }
            });
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let bodies = rxs[i % n].recv().unwrap_or_else(|_| chunk.iter().map(|_| Err("reader stopped".to_string())).collect());
            // An error drops the receivers, which stops the readers.
            each(chunk, bodies)?;
        }
        Ok(())
    })
}

/// Batches of at most `max_msgs` messages and about `max_bytes` bytes.
fn batches(msgs: &[SourceMsg], max_bytes: u64, max_msgs: usize) -> Vec<&[SourceMsg]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, m) in msgs.iter().enumerate() {
        if i > start && (bytes + m.size > max_bytes || i - start >= max_msgs) {
            out.push(&msgs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += m.size;
    }
    if start < msgs.len() {
        out.push(&msgs[start..]);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn apply_plan(
    p: &Plan,
    src_id: &str,
    target: &mut dyn Target,
    user: &str,
    state: &mut State,
    readers: &mut [Box<dyn Reader>],
    opts: &Options,
    progress: &mut Progress,
    summary: &mut Summary,
) -> Result<(), String> {
    let name = &p.source.name;
    let mut saved = state.get(name, src_id, p.source.uidvalidity).cloned().unwrap_or(BoxState {
        source: src_id.to_string(),
        uidvalidity: p.source.uidvalidity,
        last_uid: 0,
        modseq: None,
    });
    if !p.flags.is_empty() {
        call(target, Op::Flags { user: user.into(), mailbox: name.clone(), changes: p.flags.clone() })?;
        summary.flags_updated += p.flags.len() as u64;
    }
    if !p.expunge.is_empty() {
        progress.say(&format!("{name}: expunging UIDs {:?}, expunged on the source", p.expunge));
        call(target, Op::Expunge { user: user.into(), mailbox: name.clone(), uids: p.expunge.clone() })?;
        summary.expunged += p.expunge.len() as u64;
    }
    let (max_bytes, max_msgs) = target.batch_limits();
    let chunks = batches(&p.new, opts.batch_bytes.min(max_bytes), opts.batch_msgs.min(max_msgs));
    fetch_in_order(readers, &p.source, &chunks, |chunk, bodies| -> Result<(), String> {
        let mut msgs = Vec::with_capacity(chunk.len());
        let mut data = Vec::with_capacity(chunk.len());
        for (m, body) in chunk.iter().zip(bodies) {
            match body {
                Ok(b) => {
                    let b = normalize_line_ends(b);
                    msgs.push(Incoming {
                        uid: p.keep.then_some(m.uid),
                        flags: m.flags,
                        keywords: m.keywords.clone(),
                        internal_date: m.internal_date,
                        len: b.len() as u64,
                    });
                    data.push(b);
                }
                Err(e) => {
                    let line = format!("{name} UID {}: {e}", m.uid);
                    progress.say(&format!("skipped: {line}"));
                    summary.skipped.push(line);
                }
            }
        }
        let bytes: u64 = data.iter().map(|d| d.len() as u64).sum();
        let sent: Vec<u32> = msgs.iter().filter_map(|m| m.uid).collect();
        let count = msgs.len() as u64;
        if !msgs.is_empty() {
            let uids = match target.call(Op::Append { user: user.into(), mailbox: name.clone(), msgs }, data)? {
                Reply::Appended(u) => u,
                other => return Err(format!("unexpected answer {other:?}")),
            };
            if p.keep {
                summary.renumbered += uids.iter().zip(&sent).filter(|(a, b)| a != b).count() as u64;
            } else {
                summary.renumbered += uids.len() as u64;
            }
        }
        summary.messages += count;
        summary.bytes += bytes;
        saved.last_uid = saved.last_uid.max(chunk.last().map_or(0, |m| m.uid));
        state.set(name, saved.clone())?;
        progress.advance(chunk.len() as u64, chunk.iter().map(|m| m.size).sum());
        Ok(())
    })?;
    if p.keep {
        let uidnext = p.source.uidnext.unwrap_or(0).max(p.last_uid.saturating_add(1));
        call(target, Op::Finish { user: user.into(), mailbox: name.clone(), uidnext })?;
    }
    saved.last_uid = saved.last_uid.max(p.last_uid);
    saved.modseq = p.source.highest_modseq;
    state.set(name, saved)
}

/// --verify: every source message against the stored one.
fn verify(
    sb: &SourceBox,
    keep: bool,
    target: &mut dyn Target,
    user: &str,
    readers: &mut [Box<dyn Reader>],
    opts: &Options,
    summary: &mut Summary,
) -> Result<(), String> {
    let mut stored: Vec<Digest> = Vec::new();
    loop {
        let after = stored.last().map_or(0, |d| d.uid);
        match call(target, Op::Digest { user: user.into(), mailbox: sb.name.clone(), after })? {
            Reply::Digests(d) if d.is_empty() => break,
            Reply::Digests(d) => stored.extend(d),
            other => return Err(format!("unexpected answer {other:?}")),
        }
    }
    let listing = readers[0].list(sb, None)?;
    let by_uid: HashMap<u32, &Digest> = stored.iter().map(|d| (d.uid, d)).collect();
    let mut by_hash: HashMap<&str, usize> = HashMap::new();
    for d in &stored {
        *by_hash.entry(d.hash.as_str()).or_default() += 1;
    }
    let name = &sb.name;
    let chunks = batches(&listing.msgs, opts.batch_bytes, opts.batch_msgs);
    let mut found = Vec::new();
    fetch_in_order(readers, sb, &chunks, |chunk, bodies| -> Result<(), String> {
        for (m, body) in chunk.iter().zip(bodies) {
            let b = match body {
                Ok(b) => normalize_line_ends(b),
                Err(e) => {
                    summary.mismatches.push(format!("{name} UID {}: cannot read the source: {e}", m.uid));
                    continue;
                }
            };
            found.push((m.clone(), content_hash(&b), b.len() as u64));
        }
        Ok(())
    })?;
    if stored.len() != found.len() {
        summary.mismatches.push(format!("{name}: {} messages in the source, {} stored", found.len(), stored.len()));
    }
    for (m, hash, size) in found {
        if !keep {
            match by_hash.get_mut(hash.as_str()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => summary.mismatches.push(format!("{name}: source UID {} is not stored", m.uid)),
            }
            continue;
        }
        let Some(d) = by_uid.get(&m.uid) else {
            summary.mismatches.push(format!("{name} UID {}: not stored under its UID", m.uid));
            continue;
        };
        let mut diff = Vec::new();
        if d.hash != hash || d.size != size {
            diff.push(format!("content ({} bytes stored, {size} in the source)", d.size));
        }
        if d.flags != m.flags || !same_keywords(&d.keywords, &m.keywords) {
            diff.push(format!("flags ({}/{:?} stored, {}/{:?} in the source)", d.flags, d.keywords, m.flags, m.keywords));
        }
        if d.internal_date != m.internal_date {
            diff.push(format!("INTERNALDATE ({} stored, {} in the source)", d.internal_date, m.internal_date));
        }
        if !diff.is_empty() {
            summary.mismatches.push(format!("{name} UID {}: {}", m.uid, diff.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::migrate::model::Locator;
    use crate::migrate::target::Local;
    use crate::store::{MemIo, Settings, Store};

    /// (UID, flags, bytes) of the fake source's messages.
    type Messages = Arc<Mutex<Vec<(u32, u8, Vec<u8>)>>>;

    /// A source in memory: one mailbox whose messages and flags a test changes.
    #[derive(Clone, Default)]
    struct Fake {
        uidvalidity: Option<u32>,
        /// Each message has keyword "k<UID>".
        keywords: bool,
        msgs: Messages,
        uidnext: Arc<Mutex<u32>>,
    }

    impl Source for Fake {
        fn id(&self) -> String {
            "fake".into()
        }
        fn mailboxes(&self) -> Result<Vec<SourceBox>, String> {
            Ok(vec![SourceBox { name: "INBOX".into(), uidvalidity: self.uidvalidity, uidnext: Some(*self.uidnext.lock().unwrap()), ..Default::default() }])
        }
        fn reader(&self) -> Result<Box<dyn Reader>, String> {
            Ok(Box::new(self.clone()))
        }
    }

    impl Reader for Fake {
        fn list(&mut self, _: &SourceBox, _: Option<Since>) -> Result<Listing, String> {
            let msgs = self.msgs.lock().unwrap();
            let at = |uid| SourceMsg { uid, flags: 0, keywords: vec![], internal_date: uid as i64, size: 10, at: Locator::Uid };
            let kw = |u: u32| if self.keywords { vec![format!("k{u}")] } else { vec![] };
            Ok(Listing { msgs: msgs.iter().map(|(u, f, _)| SourceMsg { flags: *f, keywords: kw(*u), ..at(*u) }).collect(), all_uids: None })
        }
        fn fetch(&mut self, _: &SourceBox, want: &[SourceMsg]) -> Vec<Result<Vec<u8>, String>> {
            let msgs = self.msgs.lock().unwrap();
            want.iter().map(|w| msgs.iter().find(|m| m.0 == w.uid).map(|m| m.2.clone()).ok_or_else(|| "gone".to_string())).collect()
        }
    }

    /// Passes operations to the store until `budget` appends have run, then
    /// fails every call: the import killed halfway.
    struct Dies {
        inner: Local,
        budget: usize,
    }

    impl Target for Dies {
        fn call(&mut self, op: Op, data: Vec<Vec<u8>>) -> Result<Reply, String> {
            if matches!(op, Op::Append { .. }) {
                if self.budget == 0 {
                    return Err("killed".into());
                }
                self.budget -= 1;
            }
            self.inner.call(op, data)
        }
        fn describe(&self) -> String {
            "dies".into()
        }
    }

    fn inbox(store: &Store) -> Vec<(u32, u8, Vec<u8>)> {
        let u = store.user("u", 0).unwrap();
        let mb = u.mailbox("INBOX").unwrap();
        let m = mb.borrow();
        m.msgs().iter().map(|x| (x.uid, x.flags, m.message(x).unwrap().bytes().to_vec())).collect()
    }

    fn opts() -> Options {
        Options { jobs: 2, batch_msgs: 3, ..Default::default() }
    }

    #[test]
    fn an_interrupted_import_resumes_without_duplicates_and_a_rerun_mirrors_changes() {
        let dir = tempfile::tempdir().unwrap();
        let io = Rc::new(MemIo::new());
        let store = || Store::new(io.clone(), std::path::Path::new("/mail"), Settings::default());
        let src = Fake { uidvalidity: Some(77), ..Default::default() };
        *src.msgs.lock().unwrap() = (1..=20).filter(|u| u % 4 != 0).map(|u| (u, (u % 2) as u8, format!("m{u}\r\n").into_bytes())).collect();
        *src.uidnext.lock().unwrap() = 25;
        let mut state = State::load(dir.path(), "u").unwrap();
        let mut progress = Progress::new(true);
        // Killed after two batches of three.
        let mut t = Dies { inner: Local::with_store(store(), None), budget: 2 };
        assert!(run(&src, &mut t, "u", &mut state, &opts(), &mut progress).is_err());
        drop(t);
        assert_eq!(inbox(&store()).len(), 6);
        // Resumed by a new process (state and store from disk).
        let mut state = State::load(dir.path(), "u").unwrap();
        let mut t = Local::with_store(store(), None);
        let s = run(&src, &mut t, "u", &mut state, &opts(), &mut progress).unwrap();
        assert_eq!((s.messages, s.renumbered, s.kept_uids), (9, 0, 1));
        drop(t);
        let got = inbox(&store());
        assert_eq!(got, *src.msgs.lock().unwrap(), "every message once, with its UID, flags and bytes");
        let u = store().user("u", 0).unwrap();
        assert_eq!(u.mailbox("INBOX").unwrap().borrow().uidnext(), 25);
        // The source changes: one new, one flag change, one expunged.
        {
            let mut m = src.msgs.lock().unwrap();
            m.retain(|x| x.0 != 5);
            m[0].1 = 4;
            m.push((30, 1, b"late\r\n".to_vec()));
            *src.uidnext.lock().unwrap() = 31;
        }
        let mut t = Local::with_store(store(), None);
        let s = run(&src, &mut t, "u", &mut state, &Options { verify: true, ..opts() }, &mut progress).unwrap();
        assert_eq!((s.messages, s.flags_updated, s.expunged), (1, 1, 1));
        assert!(s.ok(), "{:?}", s.mismatches);
        drop(t);
        assert_eq!(inbox(&store()), *src.msgs.lock().unwrap());
    }

    #[test]
    fn keywords_past_the_mailboxs_limit_are_reported_and_the_messages_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Rc::new(MemIo::new()), std::path::Path::new("/mail"), Settings::default());
        let src = Fake { uidvalidity: Some(3), keywords: true, ..Default::default() };
        *src.msgs.lock().unwrap() = (1..=70).map(|u| (u, 0, format!("m{u}\r\n").into_bytes())).collect();
        let mut state = State::load(dir.path(), "u").unwrap();
        let mut t = Local::with_store(store, None);
        let s = run(&src, &mut t, "u", &mut state, &opts(), &mut Progress::new(true)).unwrap();
        assert_eq!(s.messages, 70);
        assert_eq!(s.skipped.len(), 6, "{:?}", s.skipped);
        assert!(s.skipped[0].contains("keyword k65 not kept"), "{:?}", s.skipped);
        assert!(!s.ok());
    }

    #[test]
    fn without_source_uids_messages_are_numbered_by_the_target_and_not_imported_twice() {
        let dir = tempfile::tempdir().unwrap();
        let io = Rc::new(MemIo::new());
        let store = Store::new(io, std::path::Path::new("/mail"), Settings::default());
        let src = Fake::default();
        *src.msgs.lock().unwrap() = (1..=4).map(|u| (u, 0, format!("m{u}\r\n").into_bytes())).collect();
        let mut state = State::load(dir.path(), "u").unwrap();
        let mut t = Local::with_store(store, None);
        let mut progress = Progress::new(true);
        let s = run(&src, &mut t, "u", &mut state, &opts(), &mut progress).unwrap();
        assert_eq!((s.messages, s.kept_uids), (4, 0));
        src.msgs.lock().unwrap().push((5, 0, b"m5\r\n".to_vec()));
        let s = run(&src, &mut t, "u", &mut state, &Options { verify: true, ..opts() }, &mut progress).unwrap();
        assert_eq!(s.messages, 1, "only the new one");
        assert!(s.ok(), "{:?}", s.mismatches);
    }
}
