//! The key column (`keys`): every message's sort keys (`mime::sortkeys`),
//! sent day and search texts (`mime::Cache::column_entry`), one after the
//! other in a file of their own, so that the first SORT or THREAD over a
//! mailbox, and a SEARCH on its address and subject fields or sent dates,
//! read them in one sequential sweep. Their other copy, in each message's
//! cache record, sits between the message bodies, a page apart: reading
//! 100k of those waits for memory 100k times, and pays a page fault each
//! while the mapping is cold (after a restart, the first SORT over 20k
//! messages took 36 ms that way; docs/store-format.md).
//!
//! Like `derived`, the file is a cache and never the source of truth:
//! - It holds entries of durable messages only: a message's record is written
//!   when its commit published it (`write::publish`), or, for messages
//!   without one (stores from before the column, records a crash lost), by
//!   the first sweep that read their keys from the cache instead. A
//!   durable message's UID is never given to another, so a record found
//!   for a UID is that message's, whatever happened since; its size is
//!   recorded beside it and checked too, against a mailbox restored from a
//!   backup without its column.
//! - Records are appended and never changed, each with a CRC-32C; one that
//!   a crash tore or lost is skipped (the sweep steps over it 8 bytes at a
//!   time) and its message's keys are read from the cache.
//! - Nothing syncs it, and a failed write is only logged.
//! - Expunged messages' records stay until they outweigh the live ones;
//!   then a sweep writes the live ones to a new file, renamed over the old
//!   (whose mapping, if a reader holds it, stays as it was).

use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use super::key_column::{decode, encode, header, KeyColumn, HEADER, RECORD_HEADER};
use super::{Mailbox, Msg};
use crate::store::format::align8;
use crate::store::io::{File, OpenMode};

const FILE: &str = "keys";
/// Records are written in batches of about this many bytes.
const BATCH: usize = 256 << 10;

/// Key records on their way to the column, written when the batch is full
/// and when it is dropped.
pub struct KeyWriter<'m> {
    mb: &'m Mailbox,
    buf: Vec<u8>,
}

impl KeyWriter<'_> {
    /// A record of `m` made from its cache record `cache`, if that has an
    /// entry (`mime::Cache::column_entry`: not one an older build wrote).
    pub fn push_cached(&mut self, m: &Msg, cache: &[u8]) {
        if let Some(e) = crate::mime::Cache::column_entry(cache) {
            self.push(m.uid, self.mb.location(m).length, &e);
        }
    }

    /// A record of the message `uid` of `size` bytes, holding `entry`.
    fn push(&mut self, uid: u32, size: u64, entry: &[u8]) {
        encode(&mut self.buf, uid, size, entry);
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // The sweep kept with the mailbox lacks these: the next one finds them.
        self.mb.key_column.replace(None);
        if let Err(e) = self.mb.append_keys(&self.buf) {
            // A cache: the keys are read from the message caches instead.
            self.mb.keys_end.set(0);
            tracing::warn!(dir = %self.mb.dir.display(), error = %e, "cannot write the key column");
        }
        self.buf.clear();
    }
}

impl Drop for KeyWriter<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Mailbox {
    fn keys_path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// A writer of records for messages that have none.
    pub fn key_writer(&self) -> KeyWriter<'_> {
        KeyWriter { mb: self, buf: Vec::new() }
    }

    /// Writes records (whole, encoded) at the end of the column, making
    /// the file first when it is missing or not of this build.
    fn append_keys(&self, records: &[u8]) -> io::Result<()> {
        let path = self.keys_path();
        let mut f = self.io.open(&path, OpenMode::Create)?;
        let mut end = self.keys_end.get();
        if end == 0 {
            end = f.len()?;
            if !self.keys_header_ok(&*f)? {
                f = self.fresh_keys(&[])?;
                end = HEADER;
            }
        }
        let end = align8(end);
        f.write_at(records, end)?;
        self.keys_end.set(end + records.len() as u64);
        Ok(())
    }

    fn keys_header_ok(&self, f: &dyn File) -> io::Result<bool> {
        let mut h = [0u8; HEADER as usize];
        Ok(f.len()? >= HEADER && f.read_at(&mut h, 0)? == h.len() && h == header(self.uidvalidity))
    }

    /// Replaces the column with one holding `records`: a new file renamed
    /// over the old, never the old one cut or changed (a reader may hold
    /// its mapping).
    fn fresh_keys(&self, records: &[u8]) -> io::Result<Rc<dyn File>> {
        let path = self.keys_path();
        let tmp = path.with_extension("tmp");
        let f = self.io.open(&tmp, OpenMode::Truncate)?;
        f.write_at(&header(self.uidvalidity), 0)?;
        f.write_at(records, HEADER)?;
        self.io.rename(&tmp, &path)?;
        self.keys_end.set(HEADER + records.len() as u64);
        Ok(f)
    }

    /// Where each message's entry is in the column, from a sweep kept with
    /// the mailbox until its messages change or records are added (4 bytes
    /// per message and the mapping); None when there is no column of this
    /// build.
    pub fn key_column(&self) -> Option<Rc<KeyColumn>> {
        if let Some((version, c)) = &*self.key_column.borrow() {
            if *version == self.version {
                return Some(c.clone());
            }
        }
        let c = Rc::new(self.sweep_keys()?);
        self.key_column.replace(Some((self.version, c.clone())));
        Some(c)
    }

    /// Sweeps the column: where each message's entry is. Rewrites the file
    /// when records of expunged messages outweigh the live ones.
    fn sweep_keys(&self) -> Option<KeyColumn> {
        let f = match self.io.open(&self.keys_path(), OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot open the key column");
                return None;
            }
        };
        if !self.keys_header_ok(&*f).unwrap_or(false) {
            return None;
        }
        // SAFETY: records are written once, past the end of everything
        // written before, and the file is never cut or rewritten in place
        // (`fresh_keys` renames a new one over it): the mapped bytes do
        // not change while the mapping lives.
        let map = unsafe { f.map_to_read() }.ok()?;
        let b = (*map).as_ref();
        let mut at = vec![0u32; self.msgs.len()];
        let (mut live, mut off) = (0usize, HEADER as usize);
        let mut finder = self.finder();
        while off + RECORD_HEADER <= b.len() && off <= u32::MAX as usize {
            let Some((uid, size, _, end)) = decode(b, off) else {
                // Torn, lost to a crash, or never written: step over.
                off += 8;
                continue;
            };
            if let Some(m) = finder.find(uid) {
                let p = finder.position();
                if self.location(m).length == size {
                    if at[p] == 0 {
                        live += end - off;
                    }
                    at[p] = off as u32;
                }
            }
            off = end;
        }
        let column = KeyColumn { map: map.clone(), at };
        if b.len() - HEADER as usize > 2 * live + (1 << 20) {
            self.rewrite_keys(&column);
        }
        Some(column)
    }

    /// The live records of `column` as a new file.
    fn rewrite_keys(&self, column: &KeyColumn) {
        let b = (*column.map).as_ref();
        let mut out = Vec::new();
        for &off in column.at.iter().filter(|&&o| o != 0) {
            if let Some((_, _, _, end)) = decode(b, off as usize) {
                out.extend_from_slice(&b[off as usize..end]);
            }
        }
        if let Err(e) = self.fresh_keys(&out) {
            self.keys_end.set(0);
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot rewrite the key column");
        }
    }

    /// Writes the records of the messages from `from` on (just published).
    pub(super) fn write_keys_from(&self, from: usize) {
        let mut w = self.key_writer();
        for m in &self.msgs[from..] {
            if let Ok(c) = self.cache(m) {
                w.push_cached(m, c.bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::Cache;
    use crate::store::{Io, MemIo, Settings};
    use std::path::Path;
    use std::rc::Rc;

    /// Small segments: an in-memory mapping copies the whole file.
    fn small() -> Settings {
        Settings { segment_size: 256 << 10, ..Settings::default() }
    }

    fn message(i: u32) -> Vec<u8> {
        format!(
            "Subject: {}topic {}\r\nFrom: U{} <u{}@x>\r\nMessage-ID: <{i}@x>\r\n\r\nbody {i}\r\n",
            if i.is_multiple_of(3) { "Re: " } else { "" },
            i % 17,
            i % 5,
            i % 7
        )
        .into_bytes()
    }

    fn filled(io: &Rc<dyn Io>, dir: &Path, n: u32) -> Mailbox {
        let mut mb = Mailbox::create(io.clone(), dir, 5, small()).unwrap();
        for i in 0..n {
            mb.append_bytes(&message(i), 0, 0, 1_000).unwrap();
        }
        mb.commit().unwrap();
        mb
    }

    /// What the column says each message's keys are, beside its cache's.
    fn column_and_caches(mb: &Mailbox) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        let column = mb.key_column();
        mb.msgs()
            .iter()
            .enumerate()
            .map(|(p, m)| {
                let c = mb.cache(m).unwrap();
                (column.as_ref().and_then(|k| k.entry(p)).map(<[u8]>::to_vec), Cache::column_entry(c.bytes()).unwrap())
            })
            .collect()
    }

    /// Published messages get their records; they are the cache's keys,
    /// and still are after reopening.
    #[test]
    fn committed_messages_are_in_the_column_with_their_cache_keys() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = Path::new("/k");
        let mb = filled(&io, dir, 40);
        for (column, cache) in column_and_caches(&mb) {
            assert_eq!(column.as_deref(), Some(&cache[..]));
        }
        drop(mb);
        let mb = Mailbox::open(io, dir, 5, small()).unwrap();
        assert!(column_and_caches(&mb).iter().all(|(c, k)| c.as_deref() == Some(&k[..])));
    }

    /// A staged append (not yet durable) has no record: it is written at
    /// the commit that publishes it.
    #[test]
    fn an_append_gets_its_record_when_it_is_durable() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mut mb = filled(&io, Path::new("/s"), 3);
        mb.append_bytes(&message(9), 0, 0, 1_000).unwrap();
        let column = mb.key_column().unwrap();
        let b = (*column.map).as_ref();
        let count = |b: &[u8]| (HEADER as usize..b.len()).step_by(8).filter(|&o| decode(b, o).is_some()).count();
        assert_eq!(count(b), 3);
        mb.commit().unwrap();
        assert_eq!(count((*mb.key_column().unwrap().map).as_ref()), 4);
    }

    /// Damage anywhere costs only the records it hits: the sweep steps over
    /// it and finds the records after it.
    #[test]
    fn a_damaged_record_is_skipped_and_the_rest_found() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = Path::new("/d");
        let mb = filled(&io, dir, 30);
        let f = io.open(&dir.join(FILE), OpenMode::Existing).unwrap();
        let len = f.len().unwrap();
        // A stretch of zeros (a lost page) in the middle, a flipped byte later.
        f.write_at(&vec![0u8; 300], HEADER + 200).unwrap();
        f.write_at(&[0xFF], len - 40).unwrap();
        let found = column_and_caches(&mb);
        let missing = found.iter().filter(|(c, _)| c.is_none()).count();
        assert!((2..=6).contains(&missing), "{missing} lost");
        assert!(found.iter().all(|(c, k)| c.as_ref().is_none_or(|c| c == k)));
        assert!(found.last().unwrap().0.is_none(), "the flipped byte is in the last record");
        assert!(found[20].0.is_some(), "records after the zeros are found");
    }

    /// A record for a UID whose message has another size (a mailbox
    /// restored without its column) is not that message's.
    #[test]
    fn a_record_of_another_size_is_not_used() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let mb = filled(&io, Path::new("/z"), 2);
        let mut w = mb.key_writer();
        w.push(mb.msgs()[1].uid, 3, b"not keys");
        drop(w);
        assert!(column_and_caches(&mb).iter().all(|(c, k)| c.as_deref() == Some(&k[..])));
    }

    /// A column of another format or UIDVALIDITY is not read, and the next
    /// write starts a new one.
    #[test]
    fn a_column_of_another_build_is_replaced() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = Path::new("/o");
        let mut mb = filled(&io, dir, 4);
        let f = io.open(&dir.join(FILE), OpenMode::Existing).unwrap();
        f.write_at(&(crate::mime::sortkeys::FORMAT + 1).to_le_bytes(), 8).unwrap();
        drop(mb);
        mb = Mailbox::open(io.clone(), dir, 5, small()).unwrap();
        assert!(mb.key_column().is_none());
        mb.append_bytes(&message(4), 0, 0, 1_000).unwrap();
        mb.commit().unwrap();
        let found = column_and_caches(&mb);
        assert_eq!(found.iter().filter(|(c, _)| c.is_some()).count(), 1, "only the new message");
    }

    /// Once the records of expunged messages outweigh the live ones, a
    /// sweep writes the live ones to a new file.
    #[test]
    fn expunged_records_are_dropped_when_they_outweigh_the_live() {
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let dir = Path::new("/e");
        let mut mb = Mailbox::create(io.clone(), dir, 5, small()).unwrap();
        let big = |i: u32| {
            format!("Subject: {}\r\nReferences: {}\r\n\r\nx\r\n", i, (0..40).map(|r| format!("<{i}.{r}@somewhere.example>")).collect::<Vec<_>>().join(" "))
        };
        for i in 0..1_200 {
            mb.append_bytes(big(i).as_bytes(), 0, 0, 1_000).unwrap();
        }
        mb.commit().unwrap();
        let gone: Vec<u32> = mb.msgs().iter().map(|m| m.uid).filter(|u| u % 10 != 0).collect();
        mb.expunge(&gone).unwrap();
        mb.commit().unwrap();
        let len = |io: &Rc<dyn Io>| io.open(&dir.join(FILE), OpenMode::Existing).unwrap().len().unwrap();
        let before = len(&io);
        assert!(column_and_caches(&mb).iter().all(|(c, k)| c.as_deref() == Some(&k[..])));
        assert!(len(&io) * 5 < before, "{} of {before} bytes left", len(&io));
        assert!(column_and_caches(&mb).iter().all(|(c, k)| c.as_deref() == Some(&k[..])), "the new file is whole");
        mb.append_bytes(big(5_000).as_bytes(), 0, 0, 1_000).unwrap();
        mb.commit().unwrap();
        assert!(column_and_caches(&mb).iter().all(|(c, k)| c.as_deref() == Some(&k[..])), "and written on");
    }
}
