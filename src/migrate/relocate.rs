//! What `ringmail user move` asks of a backend's control port: the user's
//! store as files (listed, read; on the receiving side staged, sealed), the
//! hold that keeps those files still while the last changes are copied,
//! and the commit that says where the user lives now.

use serde::{Deserialize, Serialize};

use crate::cluster::{Moved, Moves};

/// One file of a user's store, by its path under the user's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Relative, `/` between levels.
    pub path: String,
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime: i128,
    pub ino: u64,
    /// XXH3-128 of the bytes, hex, when asked for.
    pub hash: Option<String>,
}

/// An operation of a move on one backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MoveOp {
    /// Where the user lives by this backend's map and moves: the backend's
    /// name ([`MoveReply::Home`]).
    Where {
        user: String,
    },
    /// The files of the user's store, or (`staged`) of the copy of it this
    /// backend is receiving; with hashes if `hash`.
    Files {
        user: String,
        staged: bool,
        hash: bool,
    },
    /// `len` bytes of a file of the user's store from `offset` (fewer at
    /// its end); they travel after the answer.
    Read {
        user: String,
        path: String,
        offset: u64,
        len: u64,
    },
    /// Writes the bytes that travel with the request at `offset` of a
    /// staged file, creating it; `truncate`: the file ends after them.
    Stage {
        user: String,
        path: String,
        offset: u64,
        truncate: bool,
    },
    /// Removes staged files.
    Unstage {
        user: String,
        paths: Vec<String>,
    },
    /// Makes the staged copy durable and marks it whole: only a sealed copy
    /// is ever served.
    Seal {
        user: String,
    },
    /// Forgets the user's store and any staged copy here. Refused on the
    /// backend the user lives on.
    Discard {
        user: String,
    },
    /// Holds the user where they live for `lease_ms`: writes refused,
    /// deliveries deferred, sessions closed, and everything written before
    /// on disk. Answers a token ([`MoveReply::Held`]).
    Hold {
        user: String,
        lease_ms: u64,
    },
    Release {
        user: String,
        token: u64,
    },
    /// The user lives on `moved.backend` from now on. On the backend they
    /// lived on, only under a live hold (`token`); on the new one, only
    /// with a sealed copy.
    Commit {
        user: String,
        moved: Moved,
        token: Option<u64>,
    },
    /// Every move this backend knows ([`MoveReply::Moves`]).
    Moves,
}

impl MoveOp {
    pub fn user(&self) -> Option<&str> {
        match self {
            MoveOp::Where { user }
            | MoveOp::Files { user, .. }
            | MoveOp::Read { user, .. }
            | MoveOp::Stage { user, .. }
            | MoveOp::Unstage { user, .. }
            | MoveOp::Seal { user }
            | MoveOp::Discard { user }
            | MoveOp::Hold { user, .. }
            | MoveOp::Release { user, .. }
            | MoveOp::Commit { user, .. } => Some(user),
            MoveOp::Moves => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MoveReply {
    Home(String),
    Files(Vec<FileInfo>),
    /// A Read's bytes follow.
    Data,
    Held(u64),
    Moves(Moves),
    Done,
}

/// The most bytes one Read or Stage carries.
pub const PIECE: u64 = 4 << 20;
