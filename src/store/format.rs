//! Byte layouts of segments, log and index headers, exactly as
//! docs/store-format.md describes them. Encoding and decoding only: no I/O.

pub const SEGMENT_MAGIC: &[u8; 8] = b"RMSEG\0\0\x01";
pub const LOG_MAGIC: &[u8; 8] = b"RMLOG\0\0\x01";
pub const INDEX_MAGIC: &[u8; 8] = b"RMIDX\0\0\x01";
pub const VERSION: u32 = 1;

pub const SEGMENT_HEADER: u64 = 64;
pub const RECORD_HEADER: u64 = 40;
pub const RECORD_MAGIC: u32 = 0x3152_4D52;
pub const LOG_HEADER: u64 = 32;
pub const INDEX_HEADER: usize = 64;

pub const KIND_MESSAGE: u8 = 1;
pub const KIND_CACHE: u8 = 2;

/// System flags as stored (`flags` byte).
pub const F_SEEN: u8 = 1;
pub const F_ANSWERED: u8 = 2;
pub const F_FLAGGED: u8 = 4;
pub const F_DELETED: u8 = 8;
pub const F_DRAFT: u8 = 16;

/// The system flags' IMAP names (RFC 9051 2.3.2) by bit, in the order
/// Dovecot lists them: for the layers that show or read them.
pub const SYSTEM_FLAGS: [(u8, &str); 5] =
    [(F_ANSWERED, "\\Answered"), (F_FLAGGED, "\\Flagged"), (F_DELETED, "\\Deleted"), (F_SEEN, "\\Seen"), (F_DRAFT, "\\Draft")];

pub fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

pub fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

pub fn segment_header(segment: u32, uidvalidity: u32) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&segment.to_le_bytes());
    h[16..20].copy_from_slice(&uidvalidity.to_le_bytes());
    let c = crc(&h[..60]);
    h[60..64].copy_from_slice(&c.to_le_bytes());
    h
}

pub fn check_segment_header(h: &[u8]) -> Option<u32> {
    if h.len() < 64 || &h[0..8] != SEGMENT_MAGIC || u32_at(h, 8) != VERSION || u32_at(h, 60) != crc(&h[..60]) {
        return None;
    }
    Some(u32_at(h, 12))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u8,
    pub uid: u32,
    pub payload_crc: u32,
    pub len: u64,
    /// A message record's INTERNALDATE; a cache record's save date (RFC
    /// 8514), 0 in cache records written before ringmail kept it.
    pub internal_date: i64,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        h[4] = self.kind;
        h[8..12].copy_from_slice(&self.uid.to_le_bytes());
        h[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        h[16..24].copy_from_slice(&self.len.to_le_bytes());
        h[24..32].copy_from_slice(&self.internal_date.to_le_bytes());
        let c = crc(&h[..32]);
        h[32..36].copy_from_slice(&c.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Option<RecordHeader> {
        if h.len() < 40 || u32_at(h, 0) != RECORD_MAGIC || u32_at(h, 32) != crc(&h[..32]) {
            return None;
        }
        Some(RecordHeader { kind: h[4], uid: u32_at(h, 8), payload_crc: u32_at(h, 12), len: u64_at(h, 16), internal_date: u64_at(h, 24) as i64 })
    }

    /// Bytes the record takes in its segment, header and padding included.
    pub fn span(len: u64) -> u64 {
        align8(RECORD_HEADER + len)
    }
}

pub fn log_header(uidvalidity: u32, generation: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..8].copy_from_slice(LOG_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&uidvalidity.to_le_bytes());
    h[16..24].copy_from_slice(&generation.to_le_bytes());
    let c = crc(&h[..24]);
    h[24..28].copy_from_slice(&c.to_le_bytes());
    h
}

/// (uidvalidity, generation) of a valid log header.
pub fn check_log_header(h: &[u8]) -> Option<(u32, u64)> {
    if h.len() < 32 || &h[0..8] != LOG_MAGIC || u32_at(h, 8) != VERSION || u32_at(h, 24) != crc(&h[..24]) {
        return None;
    }
    Some((u32_at(h, 12), u64_at(h, 16)))
}

pub fn index_header(archive: &[u8], generation: u64) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(INDEX_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&(archive.len() as u64).to_le_bytes());
    h[24..28].copy_from_slice(&crc(archive).to_le_bytes());
    h[32..40].copy_from_slice(&generation.to_le_bytes());
    let c = crc(&h[..60]);
    h[60..64].copy_from_slice(&c.to_le_bytes());
    h
}

/// (generation, archive length) of an index file whose header is valid
/// and which holds the whole archive; its checksum is not checked.
pub fn index_header_of(file: &[u8]) -> Option<(u64, usize)> {
    let h = file.get(..INDEX_HEADER)?;
    if &h[0..8] != INDEX_MAGIC || u32_at(h, 8) != VERSION || u32_at(h, 60) != crc(&h[..60]) {
        return None;
    }
    let len = usize::try_from(u64_at(h, 16)).ok()?;
    file.get(INDEX_HEADER..INDEX_HEADER.checked_add(len)?)?;
    Some((u64_at(h, 32), len))
}

/// The archive bytes of a valid index file.
pub fn check_index(file: &[u8]) -> Option<&[u8]> {
    let (_, len) = index_header_of(file)?;
    let archive = &file[INDEX_HEADER..INDEX_HEADER + len];
    (crc(archive) == u32_at(file, 24)).then_some(archive)
}

/// Where a message lives and what it is; the immutable part of an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub segment: u32,
    pub offset: u64,
    pub length: u64,
    pub internal_date: i64,
    pub cache_segment: u32,
    pub cache_offset: u64,
    pub cache_length: u32,
    pub crc: u32,
}

/// A flag change applied alike to many messages (one STORE's): each
/// message's new flags are `(old & !clear) | set`, and keywords the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagChange {
    pub set: u8,
    pub set_keywords: u64,
    pub clear: u8,
    pub clear_keywords: u64,
}

impl FlagChange {
    /// STORE FLAGS: these and nothing else.
    pub fn replace(flags: u8, keywords: u64) -> FlagChange {
        FlagChange { set: flags, set_keywords: keywords, clear: u8::MAX, clear_keywords: u64::MAX }
    }

    /// STORE +FLAGS.
    pub fn add(flags: u8, keywords: u64) -> FlagChange {
        FlagChange { set: flags, set_keywords: keywords, clear: 0, clear_keywords: 0 }
    }

    /// STORE -FLAGS.
    pub fn remove(flags: u8, keywords: u64) -> FlagChange {
        FlagChange { set: 0, set_keywords: 0, clear: flags, clear_keywords: keywords }
    }

    /// The flags and keywords a message has after the change.
    pub fn apply(&self, flags: u8, keywords: u64) -> (u8, u64) {
        ((flags & !self.clear) | self.set, (keywords & !self.clear_keywords) | self.set_keywords)
    }
}

/// UID runs (first, last) a FLAG RUNS record holds at most: its body
/// stays far below the 1 MiB a record may have.
pub const MAX_RUNS: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    Append {
        uid: u32,
        loc: Location,
        flags: u8,
        keywords: u64,
        modseq: u64,
    },
    /// One message's flags (format 1.1 and before; read, no longer written).
    Flags {
        uid: u32,
        flags: u8,
        keywords: u64,
        modseq: u64,
    },
    /// One change of the messages in UID runs, all at one modseq (RFC 7162
    /// 3.1: one STORE, one mod-sequence). Lists only messages it changed.
    FlagRuns {
        change: FlagChange,
        modseq: u64,
        runs: Vec<(u32, u32)>,
    },
    Expunge {
        uid: u32,
        modseq: u64,
    },
    Keyword {
        index: u8,
        name: String,
    },
    /// UIDNEXT raised past the last message (format 1.3).
    UidNext {
        uid: u32,
    },
}

impl LogRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            LogRecord::Append { uid, loc, flags, keywords, modseq } => {
                out.push(1);
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&loc.segment.to_le_bytes());
                out.extend_from_slice(&loc.offset.to_le_bytes());
                out.extend_from_slice(&loc.length.to_le_bytes());
                out.extend_from_slice(&loc.internal_date.to_le_bytes());
                out.push(*flags);
                out.extend_from_slice(&keywords.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
                out.extend_from_slice(&loc.cache_segment.to_le_bytes());
                out.extend_from_slice(&loc.cache_offset.to_le_bytes());
                out.extend_from_slice(&loc.cache_length.to_le_bytes());
                out.extend_from_slice(&loc.crc.to_le_bytes());
            }
            LogRecord::Flags { uid, flags, keywords, modseq } => {
                out.push(2);
                out.extend_from_slice(&uid.to_le_bytes());
                out.push(*flags);
                out.extend_from_slice(&keywords.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
            }
            LogRecord::FlagRuns { change, modseq, runs } => {
                out.push(5);
                out.extend_from_slice(&modseq.to_le_bytes());
                out.push(change.set);
                out.extend_from_slice(&change.set_keywords.to_le_bytes());
                out.push(change.clear);
                out.extend_from_slice(&change.clear_keywords.to_le_bytes());
                for &(first, last) in runs {
                    out.extend_from_slice(&first.to_le_bytes());
                    out.extend_from_slice(&last.to_le_bytes());
                }
            }
            LogRecord::Expunge { uid, modseq } => {
                out.push(3);
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&modseq.to_le_bytes());
            }
            LogRecord::Keyword { index, name } => {
                out.push(4);
                out.push(*index);
                out.extend_from_slice(name.as_bytes());
            }
            LogRecord::UidNext { uid } => {
                out.push(6);
                out.extend_from_slice(&uid.to_le_bytes());
            }
        }
        let body = &out[start + 8..];
        let len = body.len() as u32;
        let c = crc(body);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
    }

    /// Decodes the record at the start of `b`: the record and its encoded
    /// size, or None when it is short, torn or corrupt.
    pub fn decode(b: &[u8]) -> Option<(LogRecord, usize)> {
        if b.len() < 9 {
            return None;
        }
        let len = u32_at(b, 0) as usize;
        if len == 0 || len > 1 << 20 || b.len() < 8 + len {
            return None;
        }
        let body = &b[8..8 + len];
        if crc(body) != u32_at(b, 4) {
            return None;
        }
        let p = &body[1..];
        let rec = match body[0] {
            1 if p.len() == 69 => LogRecord::Append {
                uid: u32_at(p, 0),
                loc: Location {
                    segment: u32_at(p, 4),
                    offset: u64_at(p, 8),
                    length: u64_at(p, 16),
                    internal_date: u64_at(p, 24) as i64,
                    cache_segment: u32_at(p, 49),
                    cache_offset: u64_at(p, 53),
                    cache_length: u32_at(p, 61),
                    crc: u32_at(p, 65),
                },
                flags: p[32],
                keywords: u64_at(p, 33),
                modseq: u64_at(p, 41),
            },
            2 if p.len() == 21 => LogRecord::Flags { uid: u32_at(p, 0), flags: p[4], keywords: u64_at(p, 5), modseq: u64_at(p, 13) },
            3 if p.len() == 12 => LogRecord::Expunge { uid: u32_at(p, 0), modseq: u64_at(p, 4) },
            4 if !p.is_empty() => LogRecord::Keyword { index: p[0], name: String::from_utf8(p[1..].to_vec()).ok()? },
            5 if p.len() >= 26 && (p.len() - 26).is_multiple_of(8) => LogRecord::FlagRuns {
                modseq: u64_at(p, 0),
                change: FlagChange { set: p[8], set_keywords: u64_at(p, 9), clear: p[17], clear_keywords: u64_at(p, 18) },
                runs: p[26..].chunks_exact(8).map(|r| (u32_at(r, 0), u32_at(r, 4))).collect(),
            },
            6 if p.len() == 4 => LogRecord::UidNext { uid: u32_at(p, 0) },
            _ => return None,
        };
        Some((rec, 8 + len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_roundtrip_and_detect_damage() {
        let recs = vec![
            LogRecord::Append {
                uid: 7,
                loc: Location {
                    segment: 2,
                    offset: 104,
                    length: 5000,
                    internal_date: -3,
                    cache_segment: 2,
                    cache_offset: 5200,
                    cache_length: 300,
                    crc: 0xdead_beef,
                },
                flags: F_SEEN | F_DRAFT,
                keywords: 1 << 63,
                modseq: 99,
            },
            LogRecord::Flags { uid: 7, flags: 0, keywords: 5, modseq: 100 },
            LogRecord::Expunge { uid: 7, modseq: 101 },
            LogRecord::Keyword { index: 3, name: "$Forwarded".into() },
            LogRecord::FlagRuns { change: FlagChange::remove(F_SEEN, 1 << 9), modseq: 102, runs: vec![(1, 1), (3, 90_000)] },
            LogRecord::FlagRuns { change: FlagChange::replace(F_DRAFT, 0), modseq: 103, runs: vec![(u32::MAX, u32::MAX)] },
            LogRecord::UidNext { uid: 4_000_000 },
        ];
        let mut buf = Vec::new();
        for r in &recs {
            r.encode(&mut buf);
        }
        let mut at = 0;
        for r in &recs {
            let (d, n) = LogRecord::decode(&buf[at..]).unwrap();
            assert_eq!(&d, r);
            at += n;
        }
        assert_eq!(at, buf.len());
        // The first record is 8 + 1 + 69 bytes; every shorter prefix is torn.
        for cut in 0..78 {
            assert!(LogRecord::decode(&buf[..cut]).is_none());
        }
        let mut bad = buf.clone();
        bad[20] ^= 1;
        assert!(LogRecord::decode(&bad).is_none());
    }

    #[test]
    fn headers_roundtrip() {
        let h = RecordHeader { kind: KIND_MESSAGE, uid: 3, payload_crc: 9, len: 77, internal_date: 1_700_000_000 };
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
        assert_eq!(check_segment_header(&segment_header(5, 42)), Some(5));
        assert_eq!(check_log_header(&log_header(42, 7)), Some((42, 7)));
        let archive = b"0123456789";
        let mut file = index_header(archive, 3).to_vec();
        file.extend_from_slice(archive);
        assert_eq!(check_index(&file), Some(&archive[..]));
        file[70] ^= 1;
        assert_eq!(check_index(&file), None);
    }
}
