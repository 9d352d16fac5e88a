//! The index checkpoint: an rkyv archive of every message of a mailbox,
//! validated once when the mailbox opens and then read in place from the
//! mapping.

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::format::{self, Location};
use std::sync::Arc;

use super::io::SharedMapping;

/// One message in the index. Fixed size, so the archive is an array.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rec {
    pub uid: u32,
    pub segment: u32,
    pub offset: u64,
    pub length: u64,
    pub internal_date: i64,
    pub modseq: u64,
    pub keywords: u64,
    pub cache_offset: u64,
    pub cache_segment: u32,
    pub cache_length: u32,
    pub crc: u32,
    pub flags: u8,
}

impl Rec {
    pub fn location(&self) -> Location {
        Location {
            segment: self.segment,
            offset: self.offset,
            length: self.length,
            internal_date: self.internal_date,
            cache_segment: self.cache_segment,
            cache_offset: self.cache_offset,
            cache_length: self.cache_length,
            crc: self.crc,
        }
    }

    pub fn new(uid: u32, loc: Location, flags: u8, keywords: u64, modseq: u64) -> Rec {
        Rec {
            uid,
            segment: loc.segment,
            offset: loc.offset,
            length: loc.length,
            internal_date: loc.internal_date,
            modseq,
            keywords,
            cache_offset: loc.cache_offset,
            cache_segment: loc.cache_segment,
            cache_length: loc.cache_length,
            crc: loc.crc,
            flags,
        }
    }
}

impl ArchivedRec {
    pub fn location(&self) -> Location {
        Location {
            segment: self.segment.to_native(),
            offset: self.offset.to_native(),
            length: self.length.to_native(),
            internal_date: self.internal_date.to_native(),
            cache_segment: self.cache_segment.to_native(),
            cache_offset: self.cache_offset.to_native(),
            cache_length: self.cache_length.to_native(),
            crc: self.crc.to_native(),
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default)]
pub struct IndexData {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub generation: u64,
    pub next_segment: u32,
    pub keywords: Vec<String>,
    pub records: Vec<Rec>,
}

/// Serializes a checkpoint: header followed by the archive.
pub fn encode(data: &IndexData) -> Vec<u8> {
    let archive = rkyv::to_bytes::<RkyvError>(data).expect("serializing plain data cannot fail");
    let mut file = format::index_header(&archive, data.generation).to_vec();
    file.extend_from_slice(&archive);
    file
}

#[derive(Clone)]
enum Backing {
    /// The file mapping; the archive starts at INDEX_HEADER, which keeps the
    /// page alignment of the mapping good enough for rkyv.
    Mapped(SharedMapping),
    /// A copy, when the mapping is not suitably aligned (in-memory test files).
    Copied(Arc<AlignedVec>),
}

/// A validated, mapped index. Accessors read the archive in place. Clones
/// share the mapping, on any thread (a checkpoint job reads the records it
/// carries over from it).
#[derive(Clone)]
pub struct IndexMap {
    backing: Backing,
    len: usize,
}

impl IndexMap {
    /// Validates the file (header, checksum, rkyv structure). None if it is
    /// not a valid index.
    pub fn open(map: SharedMapping) -> Option<IndexMap> {
        let bytes = (*map).as_ref();
        let archive = format::check_index(bytes)?;
        let len = archive.len();
        let aligned = (archive.as_ptr() as usize).is_multiple_of(16);
        let backing = if aligned {
            Backing::Mapped(map.clone())
        } else {
            let mut v = AlignedVec::<16>::new();
            v.extend_from_slice(archive);
            Backing::Copied(Arc::new(v))
        };
        let m = IndexMap { backing, len };
        rkyv::access::<ArchivedIndexData, RkyvError>(m.archive_bytes()).ok()?;
        Some(m)
    }

    /// `open` for an index this process has just serialized and written
    /// (a checkpoint's): only the header is checked. The archive's checksum
    /// and structure are not checked again on the worker, which would cost
    /// a pass over every message (they are checked whenever the mailbox is
    /// opened from disk). None if the file is not the index written.
    pub fn open_written(map: SharedMapping, generation: u64) -> Option<IndexMap> {
        let (written, len) = format::index_header_of((*map).as_ref())?;
        let aligned = ((*map).as_ref()[format::INDEX_HEADER..].as_ptr() as usize).is_multiple_of(16);
        if written != generation || !aligned {
            return None;
        }
        Some(IndexMap { backing: Backing::Mapped(map), len })
    }

    fn archive_bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => &(**m).as_ref()[format::INDEX_HEADER..format::INDEX_HEADER + self.len],
            Backing::Copied(v) => &v[..],
        }
    }

    pub fn data(&self) -> &ArchivedIndexData {
        // SAFETY: the same bytes passed `rkyv::access` (full validation) in
        // `open`, or were made by rkyv's serializer in this process
        // (`open_written`: a checkpoint job encoded them and wrote them
        // whole, or failed); and they never change: the mapping is
        // read-only and index files are replaced by rename, never written
        // in place.
        unsafe { rkyv::access_unchecked::<ArchivedIndexData>(self.archive_bytes()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_reject_corruption() {
        let data = IndexData {
            uidvalidity: 42,
            uidnext: 10,
            highest_modseq: 5,
            generation: 2,
            next_segment: 3,
            keywords: vec!["$Junk".into()],
            records: (1..10).map(|u| Rec { uid: u, length: u as u64 * 10, flags: 1, ..Default::default() }).collect(),
        };
        let file = encode(&data);
        // Misalign on purpose: the map falls back to a copy.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&file);
        for bytes in [file.clone(), shifted[1..].to_vec()] {
            let m = IndexMap::open(Arc::new(bytes)).expect("valid");
            let d = m.data();
            assert_eq!(d.uidnext.to_native(), 10);
            assert_eq!(d.records.len(), 9);
            assert_eq!(d.records[8].length.to_native(), 90);
            assert_eq!(d.keywords[0].as_str(), "$Junk");
        }
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 5] ^= 0x40;
        assert!(IndexMap::open(Arc::new(bad)).is_none());
    }
}
