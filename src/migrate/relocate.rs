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
}

/// Files are compared and copied in blocks of this size: segments are
/// large sparse files written in place, so a change is found and copied
/// by its blocks, and blocks of zeros (holes) travel as a length.
pub const BLOCK: u64 = 1 << 20;

/// The hash of a block of zeros (a real block hashing to 0 is given 1).
pub const ZERO_BLOCK: u64 = 0;

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
    /// backend is receiving ([`MoveReply::Files`]).
    Files { user: String, id: u64, staged: bool },
    /// A file's length and the XXH3-64 of each of its blocks
    /// ([`MoveReply::Blocks`]).
    Blocks { user: String, id: u64, path: String },
    /// `len` bytes of a file of the user's store from `offset` (fewer at
    /// its end); they travel after the answer.
    Read { user: String, id: u64, path: String, offset: u64, len: u64 },
    /// On the new home: forgets any store or staged copy of the user and
    /// receives theirs for move `id`.
    Receive { user: String, id: u64 },
    /// Writes the bytes that travel with the request at `offset` of a
    /// staged file, creating it; or, with `zeros`, makes that many bytes
    /// from `offset` a hole.
    Stage { user: String, id: u64, path: String, offset: u64, zeros: u64 },
    /// Sets a staged file's length.
    Truncate { user: String, id: u64, path: String, len: u64 },
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
            | MoveOp::Blocks { user, .. }
            | MoveOp::Truncate { user, .. }
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
    /// The files, and the backend's clock when it listed them (nanoseconds
    /// since the epoch, as `mtime`).
    Files {
        files: Vec<FileInfo>,
        now: i128,
    },
    Blocks {
        len: u64,
        blocks: Vec<u64>,
    },
    /// A Read's bytes follow.
    Data,
    Claimed(u64),
    Moves(Moves),
    Done,
}

/// The most bytes one Read or Stage carries.
pub const PIECE: u64 = 4 << 20;
