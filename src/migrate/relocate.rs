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

/// An operation of a move on one backend. A move has an id, which the
/// user's old home gives it ([`MoveOp::Claim`]): the old home serves only
/// one move of a user at a time, and the new home takes staged files only
/// from the move that started receiving them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MoveOp {
    /// Where the user lives by this backend's map and moves: the backend's
    /// name ([`MoveReply::Home`]).
    Where { user: String },
    /// On the user's home: starts a move, which lasts while its operations
    /// come at most `lease_ms` apart. Answers its id ([`MoveReply::Claimed`]).
    Claim { user: String, lease_ms: u64 },
    /// The files of the user's store, or (`staged`) of the copy of it this
    /// backend is receiving; with hashes if `hash`.
    Files { user: String, id: u64, staged: bool, hash: bool },
    /// `len` bytes of a file of the user's store from `offset` (fewer at
    /// its end); they travel after the answer.
    Read { user: String, id: u64, path: String, offset: u64, len: u64 },
    /// On the new home: forgets any store or staged copy of the user and
    /// receives theirs for move `id`.
    Receive { user: String, id: u64 },
    /// Writes the bytes that travel with the request at `offset` of a
    /// staged file, creating it; `truncate`: the file ends after them.
    Stage { user: String, id: u64, path: String, offset: u64, truncate: bool },
    /// Removes staged files.
    Unstage { user: String, id: u64, paths: Vec<String> },
    /// Makes the staged copy durable and marks it whole, for move `id`:
    /// only a sealed copy is ever served.
    Seal { user: String, id: u64 },
    /// Holds the user where they live for `lease_ms`: writes refused,
    /// deliveries deferred, sessions closed, and everything written before
    /// on disk.
    Hold { user: String, id: u64, lease_ms: u64 },
    /// Ends the hold and the move (it failed: the user stays).
    Release { user: String, id: u64 },
    /// The user lives on `moved.backend` from now on. On the backend they
    /// lived on, only under the hold of move `moved.id`; on the new one,
    /// only with the copy that move sealed.
    Commit { user: String, moved: Moved },
    /// Forgets the user's store here, after they moved away. Refused on
    /// the backend the user lives on.
    Discard { user: String },
    /// Every move this backend knows ([`MoveReply::Moves`]).
    Moves,
}

impl MoveOp {
    pub fn user(&self) -> Option<&str> {
        match self {
            MoveOp::Where { user }
            | MoveOp::Claim { user, .. }
            | MoveOp::Files { user, .. }
            | MoveOp::Read { user, .. }
            | MoveOp::Receive { user, .. }
            | MoveOp::Stage { user, .. }
            | MoveOp::Unstage { user, .. }
            | MoveOp::Seal { user, .. }
            | MoveOp::Hold { user, .. }
            | MoveOp::Release { user, .. }
            | MoveOp::Commit { user, .. }
            | MoveOp::Discard { user } => Some(user),
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
    Claimed(u64),
    Moves(Moves),
    Done,
}

/// The most bytes one Read or Stage carries.
pub const PIECE: u64 = 4 << 20;
