//! An mbox file as a source: messages after `From ` separator lines (at the
//! start of the file or after an empty line), mboxo by default (`>From `
//! lines are kept as they are, which is what Dovecot does) or mboxrd (one
//! `>` taken off every `>…From ` line). The headers mbox keeps IMAP state
//! in are read and taken out of the message, as Dovecot does: `Status`
//! (R: \Seen), `X-Status` (A: \Answered, F: \Flagged, T: \Draft, D:
//! \Deleted), `X-Keywords`, Dovecot's `X-UID` and `X-IMAPbase` (UIDVALIDITY,
//! UIDNEXT), `X-IMAP` and `Content-Length`. A message Dovecot keeps only for
//! its folder data (`X-IMAP` first message) is skipped. INTERNALDATE comes
//! from the `From ` line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::model::{path_id, Listing, Locator, Reader, Since, Source, SourceBox, SourceMsg};
use crate::proto::days_from_civil;
use crate::store::format::{F_ANSWERED, F_DELETED, F_DRAFT, F_FLAGGED, F_SEEN};

pub struct MboxSource {
    path: PathBuf,
    map: Arc<Mmap>,
    /// The file's messages, found once when it is opened.
    parsed: Arc<Parsed>,
    mailbox: String,
    mboxrd: bool,
}

impl MboxSource {
    pub fn open(path: &Path, mailbox: &str, mboxrd: bool) -> Result<MboxSource, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: the file is only read; if another process truncates it
        // meanwhile, reading past its end raises SIGBUS, which an mbox being
        // rewritten under an import would deserve no better than garbage.
        let map = unsafe { Mmap::map(&f) }.map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        if !map.is_empty() && !map.starts_with(b"From ") {
            return Err(format!("{} is not an mbox file (it does not start with a \"From \" line)", path.display()));
        }
        let parsed = Arc::new(parse(&map));
        Ok(MboxSource { path: path.to_path_buf(), map: Arc::new(map), parsed, mailbox: mailbox.to_string(), mboxrd })
    }
}

/// One message's place in the file and the state its headers hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    date: i64,
    uid: Option<u32>,
    flags: u8,
    keywords: Vec<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    entries: Vec<Entry>,
    /// From the first message's X-IMAPbase / X-IMAP: UIDVALIDITY, UIDNEXT.
    base: Option<(u32, u32)>,
}

/// Start of each `From ` line: the file's start and every one after an
/// empty line.
fn separators(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    if b.starts_with(b"From ") {
        out.push(0);
    }
    for i in memchr::memmem::find_iter(b, b"\n\nFrom ") {
        out.push(i + 2);
    }
    for i in memchr::memmem::find_iter(b, b"\n\r\nFrom ") {
        out.push(i + 3);
    }
    out.sort_unstable();
    out
}

fn parse(b: &[u8]) -> Parsed {
    let seps = separators(b);
    let mut p = Parsed::default();
    for (k, &s) in seps.iter().enumerate() {
        let line_end = memchr::memchr(b'\n', &b[s..]).map_or(b.len(), |i| s + i + 1);
        let mut end = seps.get(k + 1).copied().unwrap_or(b.len());
        // The empty line before the next separator belongs to the mbox.
        if k + 1 < seps.len() {
            end -= 1;
            if b[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        if k + 1 == seps.len() && b[..end].ends_with(b"\n\n") {
            end -= 1;
        }
        let end = end.max(line_end);
        let date = from_line_date(&b[s..line_end]).unwrap_or(0);
        let head = header_fields(&b[line_end..end]);
        let mut e = Entry { start: line_end as u64, end: end as u64, date, uid: None, flags: 0, keywords: Vec::new() };
        let mut internal = false;
        for (name, value) in head {
            let value = String::from_utf8_lossy(value);
            let value = value.trim();
            match name.to_ascii_lowercase().as_slice() {
                b"status" if value.contains('R') => e.flags |= F_SEEN,
                b"x-status" => {
                    for (c, f) in [('A', F_ANSWERED), ('F', F_FLAGGED), ('T', F_DRAFT), ('D', F_DELETED)] {
                        if value.contains(c) {
                            e.flags |= f;
                        }
                    }
                }
                b"x-keywords" => e.keywords = value.split([' ', ',']).filter(|k| !k.is_empty()).map(str::to_string).collect(),
                b"x-uid" => e.uid = value.parse().ok(),
                b"x-imapbase" | b"x-imap" if k == 0 => {
                    let mut f = value.split_whitespace().map(|x| x.parse::<u32>().ok());
                    if let (Some(Some(v)), Some(Some(n))) = (f.next(), f.next()) {
                        p.base = Some((v, n));
                    }
                    internal = name.eq_ignore_ascii_case(b"x-imap");
                }
                _ => {}
            }
        }
        if !internal {
            p.entries.push(e);
        }
    }
    p
}

/// The header fields of a message (name, unfolded value), up to the empty line.
fn header_fields(msg: &[u8]) -> Vec<(&[u8], &[u8])> {
    let end = memchr::memmem::find(msg, b"\n\n").or_else(|| memchr::memmem::find(msg, b"\n\r\n")).map_or(msg.len(), |i| i + 1);
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    for line in msg[..end].split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            continue;
        }
        if let Some(i) = memchr::memchr(b':', line) {
            out.push((&line[..i], &line[i + 1..]));
        }
    }
    out
}

/// The date of a `From sender Www Mmm dd hh:mm:ss yyyy` line (asctime, as
/// UTC; a numeric zone after the time or the year is applied).
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    // Find the month name followed by day and time.
    // asctime writes "Jan": capitalised, three letters.
    let is_month = |w: &str| w.len() == 3 && w.starts_with(|c: char| c.is_ascii_uppercase()) && w[1..].bytes().all(|c| c.is_ascii_lowercase());
    let m = words.iter().position(|w| is_month(w) && crate::proto::parse::month(w.as_bytes()).is_some() && words.len() > 2)?;
    let month = u32::from(crate::proto::parse::month(words[m].as_bytes())?);
    let day: u32 = words.get(m + 1)?.parse().ok()?;
    let hms: Vec<u32> = words.get(m + 2)?.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let mut zone = 0i64;
    let mut year = None;
    for w in words.iter().skip(m + 3) {
        if let Ok(y) = w.parse::<i32>() {
            if w.len() == 4 && !w.starts_with(['+', '-']) {
                year = Some(y);
                continue;
            }
        }
        if w.len() == 5 && (w.starts_with('+') || w.starts_with('-')) {
            if let Ok(z) = w[1..].parse::<i64>() {
                zone = (z / 100 * 3600 + z % 100 * 60) * if w.starts_with('-') { -1 } else { 1 };
            }
        }
    }
    let t = days_from_civil(i64::from(year?), month, day) * 86400
        + i64::from(*hms.first()?) * 3600
        + i64::from(*hms.get(1)?) * 60
        + i64::from(hms.get(2).copied().unwrap_or(0));
    Some(t - zone)
}

/// Header fields that hold mbox state, taken out of imported messages.
const STATE_FIELDS: [&[u8]; 7] = [b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imapbase", b"x-imap", b"content-length"];

/// A message as stored: the state fields dropped from its header, mboxrd
/// quoting undone if asked, line ends made CRLF if the file has LF only.
fn message_bytes(raw: &[u8], mboxrd: bool) -> Vec<u8> {
    let header_end = memchr::memmem::find(raw, b"\n\n").or_else(|| memchr::memmem::find(raw, b"\n\r\n")).map_or(raw.len(), |i| i + 1);
    let mut out = Vec::with_capacity(raw.len());
    let mut skipping = false;
    let mut at = 0;
    for line in raw.split_inclusive(|&c| c == b'\n') {
        let in_header = at < header_end;
        at += line.len();
        if in_header {
            let continued = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
            if !continued {
                let name = memchr::memchr(b':', line).map(|i| &line[..i]);
                skipping = name.is_some_and(|n| STATE_FIELDS.iter().any(|f| n.eq_ignore_ascii_case(f)));
            }
            if skipping {
                continue;
            }
        } else if mboxrd {
            let gts = line.iter().take_while(|&&c| c == b'>').count();
            if gts > 0 && line[gts..].starts_with(b"From ") {
                out.extend_from_slice(&line[1..]);
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    super::model::normalize_line_ends(out)
}

impl Source for MboxSource {
    fn id(&self) -> String {
        path_id("mbox", &self.path)
    }

    fn mailboxes(&self) -> Result<Vec<SourceBox>, String> {
        let p = &self.parsed;
        let with_uids = p.base.is_some() && p.entries.iter().all(|e| e.uid.is_some());
        Ok(vec![SourceBox {
            name: self.mailbox.clone(),
            uidvalidity: p.base.filter(|_| with_uids).map(|b| b.0),
            uidnext: p.base.filter(|_| with_uids).map(|b| b.1),
            ..Default::default()
        }])
    }

    fn reader(&self) -> Result<Box<dyn Reader>, String> {
        Ok(Box::new(MboxReader { map: self.map.clone(), parsed: self.parsed.clone(), mboxrd: self.mboxrd }))
    }
}

struct MboxReader {
    map: Arc<Mmap>,
    parsed: Arc<Parsed>,
    mboxrd: bool,
}

impl Reader for MboxReader {
    fn list(&mut self, mailbox: &SourceBox, _since: Option<Since>) -> Result<Listing, String> {
        let keep_uids = mailbox.uidvalidity.is_some();
        let mut msgs: Vec<SourceMsg> = self
            .parsed
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| SourceMsg {
                uid: if keep_uids { e.uid.unwrap_or(0) } else { i as u32 + 1 },
                flags: e.flags,
                keywords: e.keywords.clone(),
                internal_date: e.date,
                size: e.end - e.start,
                at: Locator::Range(e.start, e.end),
            })
            .collect();
        if keep_uids {
            // UIDs must ascend; Dovecot's do. Anything else: file order.
            if msgs.windows(2).any(|w| w[0].uid >= w[1].uid) || msgs.first().is_some_and(|m| m.uid == 0) {
                return Err("the mbox's X-UID headers do not ascend; import it with --mailbox into a new mailbox after removing them".into());
            }
        }
        msgs.sort_by_key(|m| m.uid);
        Ok(Listing { msgs, all_uids: None })
    }

    fn fetch(&mut self, _mailbox: &SourceBox, msgs: &[SourceMsg]) -> Vec<Result<Vec<u8>, String>> {
        msgs.iter()
            .map(|m| match m.at {
                Locator::Range(s, e) if e as usize <= self.map.len() => Ok(message_bytes(&self.map[s as usize..e as usize], self.mboxrd)),
                _ => Err("the mbox file changed during the import".to_string()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBOX: &[u8] = b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n\
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\
X-IMAP: 1700000000 0000000010 $Work\n\n\
This text is part of the internal format of your mail folder.\n\n\
From a@example.com Fri Nov 27 12:00:00 2026\n\
Subject: one\n\
Status: RO\n\
X-Status: AF\n\
X-Keywords: $Work\n\
X-UID: 3\n\n\
>From the start\n\n\
From b@example.com Sat Nov 28 01:02:03 2026\n\
Subject: two\n\
X-UID: 7\n\
Content-Length: 5\n\n\
body\n";

    #[test]
    fn messages_state_and_uids_come_from_dovecot_headers() {
        let p = parse(MBOX);
        assert_eq!(p.base, Some((1700000000, 10)));
        assert_eq!(p.entries.len(), 2, "the folder-data message is not mail");
        let e = &p.entries[0];
        assert_eq!((e.uid, e.flags, e.keywords.clone()), (Some(3), F_SEEN | F_ANSWERED | F_FLAGGED, vec!["$Work".to_string()]));
        assert_eq!(e.date, 1_795_780_800, "2026-11-27 12:00:00 UTC");
        let raw = &MBOX[e.start as usize..e.end as usize];
        assert_eq!(message_bytes(raw, false), b"Subject: one\r\n\r\n>From the start\r\n");
        assert_eq!(message_bytes(raw, true), b"Subject: one\r\n\r\nFrom the start\r\n");
        let e = &p.entries[1];
        assert_eq!(message_bytes(&MBOX[e.start as usize..e.end as usize], false), b"Subject: two\r\n\r\nbody\r\n");
    }

    #[test]
    fn from_lines_inside_a_paragraph_do_not_split_messages() {
        let p = parse(b"From x Mon Jan  5 00:00:00 2026\nA: b\n\nline\nFrom here on\n");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].date, days_from_civil(2026, 1, 5) * 86400);
        assert_eq!(from_line_date(b"From x Mon Jan  5 10:00:00 +0200 2026"), Some(days_from_civil(2026, 1, 5) * 86400 + 8 * 3600));
    }
}
