//! Every bound the protocol core enforces, in one place, each with its reason.
//!
//! Nothing here allocates; the decoder and parser read these values so that no
//! client input can make a connection hold more memory than they allow.

/// Bounds on what one client may make the decoder buffer or the parser build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line (the text between literals). Real clients stay far
    /// below this (a UID FETCH with a long sequence set is a few KiB); longer
    /// lines are discarded up to `discard_max` and answered with BAD. At most
    /// 64 KiB - 1: tokens carry 16-bit lengths.
    pub line_max: usize,
    /// Bytes of one command kept in memory: its lines plus every literal that
    /// is not an APPEND message (LOGIN passwords, SEARCH strings). APPEND message
    /// literals are streamed to the store and never count here.
    pub command_max: usize,
    /// How much of an over-long line we read and throw away hoping to resync at
    /// its end before giving up with BYE. Bounds the time a hostile client can
    /// keep a connection busy without ever sending a command.
    pub discard_max: usize,
    /// Longest tag; RFC 9051 sets none, Dovecot and Stalwart cap tags too so a
    /// tag can be echoed without unbounded output.
    pub tag_max: usize,
    /// Deepest parenthesis nesting in a command (SEARCH keys, fetch lists).
    /// The parser is recursive, so this bounds its stack.
    pub nesting_max: usize,
    /// Largest message accepted by APPEND (and advertised as APPENDLIMIT).
    pub message_max: u64,
    /// Largest non-APPEND literal. Literals bigger than this get BAD (synchronizing)
    /// or are skipped (non-synchronizing, up to `discard_max`). At most 64 KiB - 1.
    pub literal_max: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        line_max: 64 * 1024 - 1,
        command_max: 256 * 1024,
        discard_max: 16 * 1024 * 1024,
        tag_max: 64,
        nesting_max: 32,
        message_max: 64 * 1024 * 1024,
        literal_max: 64 * 1024 - 1,
    };
}

impl Limits {
    /// Before authentication only CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE,
    /// ID, NOOP and LOGOUT are valid, and the largest of them is an ID with
    /// 30 fields of 1,024 octets (RFC 2971 3.3): about 32 KiB. An
    /// unauthenticated connection that stalls in the middle of a command
    /// holds at most `command_max` (64 KiB) instead of 256 KiB, and a line
    /// too long is answered with BYE after 128 KiB, not 16 MiB.
    pub const PRE_AUTH: Limits = Limits {
        line_max: 64 * 1024 - 1,
        command_max: 64 * 1024,
        discard_max: 64 * 1024,
        tag_max: 64,
        nesting_max: 8,
        message_max: Limits::DEFAULT.message_max,
        literal_max: 8 * 1024,
    };

    /// Tokens carry 16-bit lengths: no line or kept literal may be longer.
    pub fn clamped(self) -> Limits {
        let max = super::scan::MAX_TOKEN_LEN;
        Limits { line_max: self.line_max.min(max), literal_max: self.literal_max.min(max), ..self }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
