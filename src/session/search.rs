//! Search keys evaluated against messages (RFC 9051 6.4.4). Flags, dates
//! and sizes come from the index; addresses, subjects and sent dates from
//! the key column (`store::mailbox::keys`) when many messages are looked
//! at, else from the cache's decoded text; BODY and TEXT scan the mapped
//! message bytes with a SIMD-assisted, ASCII-case-insensitive substring
//! search.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::mime::casemap::casemap;
use crate::mime::{header, Cache, ColumnEntry, Kind, Transfer};
use crate::proto::{Date, Flag, SearchKey, SequenceSet};
use crate::store::format::{F_ANSWERED, F_DELETED, F_DRAFT, F_FLAGGED, F_SEEN};
use crate::store::{KeyColumn, Mailbox, Msg, UidList};

/// Whether any key of `k` that is not AND, OR or NOT is one `leaf` accepts.
fn any_leaf(k: &SearchKey, leaf: &dyn Fn(&SearchKey) -> bool) -> bool {
    match k {
        SearchKey::And(v) => v.iter().any(|k| any_leaf(k, leaf)),
        SearchKey::Or(a, b) => any_leaf(a, leaf) || any_leaf(b, leaf),
        SearchKey::Not(a) => any_leaf(a, leaf),
        k => leaf(k),
    }
}

/// Whether the key uses MODSEQ (the response then reports it).
pub fn uses_modseq(k: &SearchKey) -> bool {
    any_leaf(k, &|k| matches!(k, SearchKey::ModSeq(_)))
}

/// Substring search under `i;unicode-casemap` (RFC 5051), for header text:
/// both sides titlecased and decomposed, so `e` finds `É` and `ﬁ` finds
/// `FI`. ASCII on both sides takes the fast path (the same answer).
pub fn contains_casemap(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_ascii() && hay.is_ascii() {
        return contains_ascii_ci(hay, needle);
    }
    let n = casemap(&String::from_utf8_lossy(needle));
    let h = casemap(&String::from_utf8_lossy(hay));
    memchr::memmem::find(h.as_bytes(), n.as_bytes()).is_some()
}

/// Substring search in message bodies (RFC 9051 6.4.4): an ASCII needle
/// is matched ASCII-case-insensitively (bodies are large; accented letters
/// in them are found only by a needle that has them), any other under
/// `i;unicode-casemap`.
pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_ascii() {
        return contains_ascii_ci(hay, needle);
    }
    contains_casemap(hay, needle)
}

/// ASCII-case-insensitive substring search. Candidates are found with
/// memchr2 on the needle's first byte in both cases (SIMD in the memchr
/// crate), then checked in place.
pub fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else { return true };
    if needle.len() > hay.len() {
        return false;
    }
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let last_start = hay.len() - needle.len();
    let mut at = 0;
    while at <= last_start {
        let window = &hay[at..=last_start];
        let Some(p) = memchr::memchr2(lo, up, window) else { return false };
        let i = at + p;
        if hay[i + 1..i + needle.len()].eq_ignore_ascii_case(&needle[1..]) {
            return true;
        }
        at = i + 1;
    }
    false
}

/// The UTC calendar day of a timestamp.
fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

/// What a search needs of the session besides the mailbox: its numbering,
/// its \Recent messages and its saved result (RFC 5182).
pub trait Numbering {
    /// UIDs by sequence number (index + 1).
    fn uids(&self) -> &UidList;
    fn is_recent(&self, uid: u32) -> bool;
    /// `$`: the saved result, as UIDs.
    fn saved(&self) -> &[u32];
}

pub struct Matcher<'a> {
    mb: &'a Mailbox,
    sel: &'a dyn Numbering,
    /// Seconds since the epoch, for WITHIN (RFC 5032).
    now: i64,
    max_seq: u32,
    max_uid: u32,
    /// Message bytes loaded so far: what a search slice is budgeted by.
    work: std::cell::Cell<u64>,
    /// The mailbox's key column, when the search reads it.
    column: Option<Rc<KeyColumn>>,
}

/// What is loaded for one message, at most once.
struct Loaded<'a> {
    bytes: OnceCell<Option<crate::proto::Shared>>,
    /// The cache record as stored (shared from the mapping), or made
    /// afresh when the stored one cannot be read.
    cache_blob: OnceCell<Option<crate::proto::Shared>>,
    /// The message's entry in the key column, if it has one.
    entry: Option<&'a [u8]>,
}

impl<'a> Matcher<'a> {
    pub fn new(mb: &'a Mailbox, sel: &'a dyn Numbering, now: i64) -> Self {
        Matcher { mb, sel, now, max_seq: sel.uids().len() as u32, max_uid: sel.uids().last().unwrap_or(0), work: Default::default(), column: None }
    }

    /// Reads what the key column has (`matches_at`) from `column`.
    pub fn with_column(mut self, column: Option<Rc<KeyColumn>>) -> Self {
        self.column = column;
        self
    }

    /// Bytes of messages looked at (headers and bodies) so far.
    pub fn work(&self) -> u64 {
        self.work.get()
    }

    /// Whether `key` asks for what the key column has: address and
    /// subject text, sent dates.
    pub fn reads_column(key: &SearchKey) -> bool {
        any_leaf(key, &|k| match k {
            SearchKey::Header(name, v) => !v.is_empty() && crate::mime::SEARCH_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name)),
            SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => true,
            _ => false,
        })
    }

    /// Whether evaluating `key` reads messages' caches.
    pub fn reads_cache(key: &SearchKey) -> bool {
        any_leaf(key, &|k| match k {
            SearchKey::Header(_, v) => !v.is_empty(),
            SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) | SearchKey::Body(_) | SearchKey::Text(_) => true,
            SearchKey::EmailId(_) | SearchKey::ThreadId(_) => true,
            _ => false,
        })
    }

    /// Asks the CPU for what a search reads of `m`, at `position` in the
    /// mailbox: its key column record, else the start of its cache record
    /// (the fields before the search text are skipped by their lengths,
    /// and the text follows within a few hundred bytes).
    pub fn prefetch(&self, m: &Msg, position: usize) {
        if let Some(r) = self.column.as_ref().and_then(|c| c.record(position)) {
            super::sort::prefetch(r);
        } else if let Ok(c) = self.mb.cache_unread(m) {
            super::sort::prefetch_lines(c.bytes(), 24);
        }
    }

    pub fn matches(&self, key: &SearchKey, m: &Msg, seq: u32) -> bool {
        self.matches_at(key, m, seq, None)
    }

    /// `matches` for the message at `position` in the mailbox: what the
    /// key column has of it is read there.
    pub fn matches_at(&self, key: &SearchKey, m: &Msg, seq: u32, position: Option<usize>) -> bool {
        let entry = self.column.as_ref().zip(position).and_then(|(c, p)| c.entry(p));
        let l = Loaded { bytes: OnceCell::new(), cache_blob: OnceCell::new(), entry };
        self.eval(key, m, seq, &l)
    }

    fn bytes<'l>(&self, m: &Msg, l: &'l Loaded<'_>) -> Option<&'l crate::proto::Shared> {
        l.bytes
            .get_or_init(|| {
                let b = self.mb.message(m).ok();
                self.work.set(self.work.get() + b.as_ref().map_or(0, |b| b.len() as u64));
                b
            })
            .as_ref()
    }

    fn with_cache<R>(&self, m: &Msg, l: &Loaded<'_>, f: impl FnOnce(&Cache<'_>) -> R) -> Option<R> {
        let blob = l.cache_blob.get_or_init(|| {
            let c = self.mb.cache(m).ok()?;
            if Cache::parse(c.bytes()).is_some() {
                Some(c)
            } else {
                let msg = self.mb.message(m).ok()?;
                Some(crate::proto::Shared::from_vec(crate::mime::analyze(msg.bytes())))
            }
        });
        blob.as_ref().and_then(|b| Cache::parse(b.bytes())).map(|c| f(&c))
    }

    fn flag(&self, f: &Flag, m: &Msg) -> bool {
        let bit = match f {
            Flag::Seen => F_SEEN,
            Flag::Answered => F_ANSWERED,
            Flag::Flagged => F_FLAGGED,
            Flag::Deleted => F_DELETED,
            Flag::Draft => F_DRAFT,
            Flag::Recent => return self.sel.is_recent(m.uid),
            Flag::Extension(_) => return false,
            Flag::Keyword(k) => {
                return self.mb.keywords().iter().position(|x| x.eq_ignore_ascii_case(k)).is_some_and(|i| m.keywords & (1 << i) != 0);
            }
        };
        m.flags & bit != 0
    }

    fn in_set(&self, set: &SequenceSet, n: u32, max: u32, uid: bool) -> bool {
        match set {
            SequenceSet::Saved => self.sel.saved().binary_search(&(if uid { n } else { self.sel.uids()[n as usize - 1] })).is_ok(),
            SequenceSet::Ranges(r) => r.contains(n, max),
        }
    }

    fn sent_day(&self, m: &Msg, l: &Loaded<'_>) -> i64 {
        if let Some(e) = l.entry.and_then(ColumnEntry::decode) {
            return e.sent_days.map_or_else(|| day_of(self.mb.location(m).internal_date), i64::from);
        }
        self.with_cache(m, l, |c| c.sent_days).flatten().map_or_else(|| day_of(self.mb.location(m).internal_date), i64::from)
    }

    fn header_matches(&self, name: &str, value: &[u8], m: &Msg, l: &Loaded<'_>) -> bool {
        // RFC 9051 6.4.4: an empty string matches every message with the field.
        if value.is_empty() {
            return self.has_field(name, m, l);
        }
        // The column and the cache hold decoded text of the address and
        // subject fields.
        if let Some(t) = l.entry.and_then(ColumnEntry::decode).and_then(|e| e.search_text(name)) {
            return contains_casemap(t, value);
        }
        if let Some(hit) = self.with_cache(m, l, |c| c.search_text(name).map(|t| contains_casemap(t, value))).flatten() {
            return hit;
        }
        let Some(msg) = self.bytes(m, l) else { return false };
        let all = msg.bytes();
        let h = &all[..header::header_len(all)];
        header::fields(h).filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).any(|f| {
            let v = header::unfold(f.value);
            contains_casemap(&v, value) || contains_casemap(crate::mime::header::decode(name, &v).as_bytes(), value)
        })
    }

    fn has_field(&self, name: &str, m: &Msg, l: &Loaded<'_>) -> bool {
        let Some(msg) = self.bytes(m, l) else { return false };
        let all = msg.bytes();
        header::fields(&all[..header::header_len(all)]).any(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Body text search: each text part with its transfer encoding undone
    /// (attachments such as PDFs or images are not searched, as in Dovecot
    /// without full-text search).
    fn body_matches(&self, needle: &[u8], m: &Msg, l: &Loaded<'_>) -> bool {
        let Some(msg) = self.bytes(m, l) else { return false };
        let all = msg.bytes();
        let parts = self
            .with_cache(m, l, |c| {
                c.iter_parts().filter(|p| p.kind == Kind::Leaf && p.text).map(|p| (p.body as usize, p.end as usize, p.transfer)).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let analysed = self.with_cache(m, l, |c| c.iter_parts().next().is_some()).unwrap_or(false);
        if !analysed {
            return contains_ci(&all[header::header_len(all)..], needle);
        }
        parts.into_iter().any(|(b, e, t)| {
            let Some(body) = all.get(b..e.min(all.len())) else { return false };
            match t {
                Transfer::Identity | Transfer::Unknown => contains_ci(body, needle),
                Transfer::QuotedPrintable if crate::mime::content::quoted_printable_is_identity(body) => contains_ci(body, needle),
                _ => crate::mime::decode_transfer(t, body).is_some_and(|d| contains_ci(&d, needle)),
            }
        })
    }

    /// The day a message was saved into the mailbox (RFC 8514); one that
    /// cannot be read matches no date.
    fn saved_day(&self, m: &Msg) -> i64 {
        self.mb.save_date(m).map_or(i64::MIN, day_of)
    }

    fn eval(&self, key: &SearchKey, m: &Msg, seq: u32, l: &Loaded<'_>) -> bool {
        let date_cmp = |d: &Date, day: i64| -> std::cmp::Ordering { day.cmp(&d.days()) };
        match key {
            SearchKey::All => true,
            SearchKey::And(v) => v.iter().all(|k| self.eval(k, m, seq, l)),
            SearchKey::Or(a, b) => self.eval(a, m, seq, l) || self.eval(b, m, seq, l),
            SearchKey::Not(a) => !self.eval(a, m, seq, l),
            SearchKey::SequenceSet(s) => self.in_set(s, seq, self.max_seq, false),
            SearchKey::Uid(s) => self.in_set(s, m.uid, self.max_uid, true),
            SearchKey::Flag(f) => self.flag(f, m),
            SearchKey::NotFlag(f) => !self.flag(f, m),
            SearchKey::Recent => self.sel.is_recent(m.uid),
            SearchKey::New => self.sel.is_recent(m.uid) && m.flags & F_SEEN == 0,
            SearchKey::Old => !self.sel.is_recent(m.uid),
            SearchKey::Before(d) => date_cmp(d, day_of(self.mb.location(m).internal_date)).is_lt(),
            SearchKey::On(d) => date_cmp(d, day_of(self.mb.location(m).internal_date)).is_eq(),
            SearchKey::Since(d) => date_cmp(d, day_of(self.mb.location(m).internal_date)).is_ge(),
            SearchKey::SentBefore(d) => date_cmp(d, self.sent_day(m, l)).is_lt(),
            SearchKey::SentOn(d) => date_cmp(d, self.sent_day(m, l)).is_eq(),
            SearchKey::SentSince(d) => date_cmp(d, self.sent_day(m, l)).is_ge(),
            SearchKey::SavedBefore(d) => date_cmp(d, self.saved_day(m)).is_lt(),
            SearchKey::SavedOn(d) => date_cmp(d, self.saved_day(m)).is_eq(),
            SearchKey::SavedSince(d) => date_cmp(d, self.saved_day(m)).is_ge(),
            // Every mailbox keeps save dates (RFC 8514 5).
            SearchKey::SaveDateSupported => true,
            SearchKey::Larger(n) => self.mb.location(m).length > *n,
            SearchKey::EmailId(id) | SearchKey::ThreadId(id) => {
                let Some(msg) = self.bytes(m, l) else { return false };
                let ids = self.with_cache(m, l, |c| c.object_ids(msg.bytes()));
                ids.is_some_and(|(email, thread)| *id == if matches!(key, SearchKey::EmailId(_)) { email } else { thread })
            }
            // RFC 5032: OLDER n is at least n seconds old (as Dovecot reads it).
            SearchKey::Older(s) => self.mb.location(m).internal_date <= self.now.saturating_sub_unsigned(*s),
            SearchKey::Younger(s) => self.mb.location(m).internal_date >= self.now.saturating_sub_unsigned(*s),
            SearchKey::Smaller(n) => self.mb.location(m).length < *n,
            SearchKey::Header(name, value) => self.header_matches(name, value, m, l),
            SearchKey::Body(v) => self.body_matches(v, m, l),
            SearchKey::Text(v) => {
                let in_header = self.bytes(m, l).is_some_and(|msg| {
                    let all = msg.bytes();
                    contains_ci(&all[..header::header_len(all)], v)
                });
                in_header || self.body_matches(v, m, l)
            }
            SearchKey::ModSeq(n) => m.modseq >= *n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct All(UidList);

    impl Numbering for All {
        fn uids(&self) -> &UidList {
            &self.0
        }
        fn is_recent(&self, _: u32) -> bool {
            false
        }
        fn saved(&self) -> &[u32] {
            &[]
        }
    }

    /// Address, subject and sent-date keys answer the same from the key
    /// column as from the caches: encoded words, comments, groups, no
    /// Date, non-ASCII needles, and messages the column lacks.
    #[test]
    fn the_key_column_answers_as_the_caches() {
        use crate::store::{Io, MemIo, Settings};
        let key = |k: &str| {
            let line = format!("a SEARCH CHARSET UTF-8 {k}");
            let mut toks = Vec::new();
            crate::proto::scan::tokenize_reference(line.as_bytes(), 0, &mut toks).expect("scan");
            match crate::proto::parse::parse_command(line.as_bytes(), &toks, 32).expect("parse").body {
                crate::proto::CommandBody::Search { key, .. } => key,
                other => panic!("{other:?}"),
            }
        };
        let io: Rc<dyn Io> = Rc::new(MemIo::new());
        let settings = Settings { segment_size: 256 << 10, ..Settings::default() };
        let mut mb = Mailbox::create(io.clone(), std::path::Path::new("/q"), 4, settings).unwrap();
        let message = |i: u32| {
            let date = if i.is_multiple_of(7) { String::new() } else { format!("Date: {} Mar 2024 10:00:00 +0000\r\n", 1 + i % 28) };
            let from = match i % 4 {
                0 => "From: =?utf-8?q?Ren=C3=A9e?= <renee@x.org>".to_string(),
                1 => format!("From: <user-from (comment)@ (c) domain{i}.org>"),
                2 => "From: Team: a@x.org, b@y.org;".to_string(),
                _ => format!("From: plain{i}@example.com"),
            };
            format!(
                "{from}\r\nTo: t{}@z.net\r\nCc: C{} <c@c.com>\r\nSubject: {}topic {}\r\n{date}\r\nbody\r\n",
                i % 3,
                i % 5,
                if i.is_multiple_of(2) { "Re: " } else { "" },
                i % 11
            )
        };
        for i in 0..300u32 {
            mb.append_bytes(message(i).as_bytes(), 0, 0, 1_000).unwrap();
        }
        mb.commit().unwrap();
        assert!((0..300).all(|p| mb.key_column().expect("written at commit").entry(p).is_some()));
        // Some messages without a record (zeros where theirs were): read
        // from their caches.
        let f = io.open(std::path::Path::new("/q/keys"), crate::store::io::OpenMode::Existing).unwrap();
        f.write_at(&[0u8; 4096], 8192).unwrap();
        drop(mb);
        let mb = Mailbox::open(io, std::path::Path::new("/q"), 4, settings).unwrap();
        let column = mb.key_column().unwrap();
        let lacking = (0..300).filter(|&p| column.entry(p).is_none()).count();
        assert!((5..100).contains(&lacking), "{lacking}");
        let sel = All(mb.msgs().iter().map(|m| m.uid).collect());
        let mut matched = 0;
        let keys = [
            "FROM \"renée\"",
            "FROM RENEE",
            "FROM user-from@domain5.org",
            "FROM b@y.org",
            "TO t1@",
            "CC c2",
            "BCC x",
            "SUBJECT \"topic 3\"",
            "OR SUBJECT topic FROM plain",
            "NOT FROM example",
            "SENTSINCE 10-Mar-2024",
            "SENTON 5-Mar-2024",
            "SENTBEFORE 3-Mar-2024",
            "HEADER X-Missing \"\"",
        ];
        for k in keys {
            let k = key(k);
            let plain = Matcher::new(&mb, &sel, 0);
            let with = Matcher::new(&mb, &sel, 0).with_column(Some(column.clone()));
            let a: Vec<u32> = mb.msgs().iter().zip(1..).filter(|(m, s)| plain.matches(&k, m, *s)).map(|(m, _)| m.uid).collect();
            let b: Vec<u32> =
                mb.msgs().iter().zip(1..).enumerate().filter(|(p, (m, s))| with.matches_at(&k, m, *s, Some(*p))).map(|(_, (m, _))| m.uid).collect();
            assert_eq!(a, b, "{k:?}");
            matched += usize::from(!a.is_empty() && a.len() < 300);
            assert!(Matcher::reads_column(&k) || matches!(k, SearchKey::Header(..)), "{k:?}");
        }
        assert!(matched >= 11, "most keys match some messages and not others: {matched}");
    }

    #[test]
    fn substring_ignores_ascii_case() {
        assert!(contains_ci(b"Hello World", b"wORLD"));
        assert!(contains_ci(b"abcabd", b"ABD"));
        assert!(!contains_ci(b"abcab", b"abd"));
        assert!(contains_ci(b"x", b""));
        assert!(!contains_ci(b"", b"x"));
        assert!(contains_ci("caf\u{e9} au lait".as_bytes(), "\u{e9} AU".as_bytes()));
        assert!(contains_ci("Caf\u{e9}".as_bytes(), "CAF\u{c9}".as_bytes()));
    }
}
