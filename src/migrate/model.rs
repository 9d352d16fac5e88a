//! What sources list and what an import asks of the store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A mailbox as a source has it. Names use `/` between levels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceBox {
    pub name: String,
    /// None when the source has no UIDs to keep (an mbox without Dovecot's
    /// headers): its messages are numbered in file order.
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    /// CONDSTORE's HIGHESTMODSEQ (RFC 7162), when the source has one.
    pub highest_modseq: Option<u64>,
    pub special_use: Option<String>,
    /// Subscribed (RFC 9051 6.3.7) or not; None: the source does not say.
    pub subscribed: Option<bool>,
    /// Only a folder level (`\Noselect`): created, holds no messages.
    pub noselect: bool,
}

/// Where a source finds a message's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    File(PathBuf),
    /// Byte range of an mbox file (the message, its `From ` line excluded).
    Range(u64, u64),
    /// The message with this UID in the IMAP source's mailbox.
    Uid,
}

/// One message of a source mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMsg {
    /// The source's UID (or the message's place in an mbox without UIDs).
    pub uid: u32,
    /// `format::F_*` bits.
    pub flags: u8,
    pub keywords: Vec<String>,
    /// INTERNALDATE, seconds since the epoch.
    pub internal_date: i64,
    /// Size as the source states it (for progress only).
    pub size: u64,
    pub at: Locator,
}

/// What a reader lists of a mailbox.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every message; or, when the reader could list changes only (IMAP
    /// with CONDSTORE after an earlier run), the new and changed ones.
    pub msgs: Vec<SourceMsg>,
    /// With changes only: every UID the mailbox holds now (for expunges).
    pub all_uids: Option<Vec<u32>>,
}

/// How far an earlier run got in a mailbox: readers that can list changes
/// only use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Since {
    pub last_uid: u32,
    pub modseq: Option<u64>,
}

/// A source of mail: lists its mailboxes and opens readers (one per
/// thread; for IMAP, one connection each).
pub trait Source: Sync {
    /// Names the source in the import state (a path, or user@host).
    fn id(&self) -> String;
    fn mailboxes(&self) -> Result<Vec<SourceBox>, String>;
    fn reader(&self) -> Result<Box<dyn Reader>, String>;
}

pub trait Reader: Send {
    fn list(&mut self, mailbox: &SourceBox, since: Option<Since>) -> Result<Listing, String>;
    /// The bytes of `msgs` (all of one mailbox), in order, each on its own:
    /// one unreadable message does not fail the others.
    fn fetch(&mut self, mailbox: &SourceBox, msgs: &[SourceMsg]) -> Vec<Result<Vec<u8>, String>>;
}

/// A message to store, its bytes travelling beside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Incoming {
    /// The UID to keep, if the mailbox can still give it (at least UIDNEXT).
    pub uid: Option<u32>,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub len: u64,
}

/// An operation on one user's store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// The user's mailboxes.
    Mailboxes {
        user: String,
    },
    /// Makes sure `mailbox` exists, with `uidvalidity` if it is new or has
    /// never held a message; subscribes or unsubscribes it as the source
    /// has it. Answers its state.
    Prepare {
        user: String,
        mailbox: String,
        uidvalidity: Option<u32>,
        special_use: Option<String>,
        subscribe: Option<bool>,
    },
    /// A mailbox's state.
    List {
        user: String,
        mailbox: String,
    },
    /// Stores messages (their bytes follow the operation), durably before
    /// the answer. Answers the UIDs they got.
    Append {
        user: String,
        mailbox: String,
        msgs: Vec<Incoming>,
    },
    /// Sets messages' flags and keywords to these.
    Flags {
        user: String,
        mailbox: String,
        changes: Vec<(u32, u8, Vec<String>)>,
    },
    Expunge {
        user: String,
        mailbox: String,
        uids: Vec<u32>,
    },
    /// Raises UIDNEXT to the source's.
    Finish {
        user: String,
        mailbox: String,
        uidnext: u32,
    },
    /// Flags, date, size and a hash of the bytes (--verify) of the messages
    /// with UIDs above `after`, as many as hash in one step (a running
    /// server's worker serves other sessions between steps); an empty
    /// answer is the end.
    Digest {
        user: String,
        mailbox: String,
        after: u32,
    },
}

impl Op {
    /// The user whose store the operation is on.
    pub fn user(&self) -> &str {
        match self {
            Op::Mailboxes { user }
            | Op::Prepare { user, .. }
            | Op::List { user, .. }
            | Op::Append { user, .. }
            | Op::Flags { user, .. }
            | Op::Expunge { user, .. }
            | Op::Finish { user, .. }
            | Op::Digest { user, .. } => user,
        }
    }
}

/// A mailbox of the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetBox {
    pub name: String,
    pub uidvalidity: u32,
    pub noselect: bool,
    pub subscribed: bool,
    pub special_use: Option<String>,
}

/// A mailbox's state: its messages' UIDs and flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetList {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// Keyword names by bit.
    pub keywords: Vec<String>,
    /// (UID, flags, keyword bits), ascending.
    pub msgs: Vec<(u32, u8, u64)>,
}

impl TargetList {
    /// A message's keyword names.
    pub fn keyword_names(&self, bits: u64) -> Vec<String> {
        crate::store::keyword_names(&self.keywords, bits)
    }
}

/// One stored message, for --verify.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Digest {
    pub uid: u32,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
    /// XXH3-128 of the bytes, hex.
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Mailboxes(Vec<TargetBox>),
    /// The state after Prepare or List.
    State(TargetList),
    Appended(Vec<u32>),
    Done,
    Digests(Vec<Digest>),
}

/// How a file source names itself in the import state.
pub fn path_id(kind: &str, path: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("{kind}:{}", abs.display())
}

/// The hash --verify compares: XXH3-128 of the bytes as stored.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// A message's bytes as ringmail stores them (Maildir and mbox files
/// written by Dovecot and most MTAs have LF line ends; IMAP serves CRLF).
pub use crate::delivery::crlf_if_lf_only as normalize_line_ends;
