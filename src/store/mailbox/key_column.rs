//! The key column's file format (docs/store-format.md "Key column") and
//! what a sweep of it found; the mailbox reads and writes it in `keys.rs`.

use crate::mime::sortkeys;
use crate::store::format::{align8, crc};
use crate::store::io::Mapping;

const MAGIC: &[u8; 8] = b"RMKEYS\0\x01";
/// What a record holds (`mime::Cache::column_entry`): 1 the sort keys
/// alone, 2 with the sent day and the search texts after them, 3 with the
/// sent day first and the keys' length before them.
const LAYOUT: u32 = 3;
/// Header: magic, `sortkeys::FORMAT`, UIDVALIDITY, `LAYOUT`, zeros, CRC-32C
/// of the bytes before it.
pub(super) const HEADER: u64 = 32;
const RECORD_MAGIC: u32 = 0x314B_4D52; // "RMK1"
/// Record header: magic, CRC-32C of everything after it up to the end of
/// the entry, UID, entry length, message size (u64). The entry follows,
/// padded to 8.
pub(super) const RECORD_HEADER: usize = 24;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(super) fn header(uidvalidity: u32) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&sortkeys::FORMAT.to_le_bytes());
    h[12..16].copy_from_slice(&uidvalidity.to_le_bytes());
    h[16..20].copy_from_slice(&LAYOUT.to_le_bytes());
    let c = crc(&h[..28]);
    h[28..].copy_from_slice(&c.to_le_bytes());
    h
}

/// Appends one record to `out`.
pub(super) fn encode(out: &mut Vec<u8>, uid: u32, size: u64, entry: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(entry);
    let c = crc(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
    out.resize(start + align8((RECORD_HEADER + entry.len()) as u64) as usize, 0);
}

/// A whole record at `off` of `b`: (UID, message size, entry, end).
pub(super) fn decode(b: &[u8], off: usize) -> Option<(u32, u64, &[u8], usize)> {
    let h = b.get(off..off + RECORD_HEADER)?;
    if u32_at(h, 0) != RECORD_MAGIC {
        return None;
    }
    let len = u32_at(h, 12) as usize;
    let end = (off + RECORD_HEADER).checked_add(len)?;
    if crc(b.get(off + 8..end)?) != u32_at(h, 4) {
        return None;
    }
    let size = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    Some((u32_at(h, 8), size, &b[off + RECORD_HEADER..end], off + align8((RECORD_HEADER + len) as u64) as usize))
}

/// The key column as one sweep found it: each message's entry by its
/// position in the mailbox (as it was then; use it before anything
/// changes).
pub struct KeyColumn {
    pub(super) map: Mapping,
    /// Offset of each message's record (0: none).
    pub(super) at: Vec<u32>,
}

impl KeyColumn {
    /// The entry of the message at `position` (`mime::ColumnEntry`), if
    /// the column has it (its record was checked by the sweep).
    pub fn entry(&self, position: usize) -> Option<&[u8]> {
        self.record(position).and_then(KeyColumn::entry_in)
    }

    /// Where the record of the message at `position` starts (the column
    /// from there on), if there is one: reads only the sweep's table, so
    /// a reader can ask the CPU for the record before it needs it.
    pub fn record(&self, position: usize) -> Option<&[u8]> {
        let off = *self.at.get(position)? as usize;
        (off != 0).then(|| &(*self.map).as_ref()[off..])
    }

    /// The entry in a record `record` gave.
    pub fn entry_in(record: &[u8]) -> Option<&[u8]> {
        let len = u32_at(record, 12) as usize;
        record.get(RECORD_HEADER..RECORD_HEADER + len)
    }
}
