//! The open-files limit against the connection cap: every connection is a
//! descriptor, and the store needs its own (segment, log, index and cache
//! files of open mailboxes, the data-directory lock, listeners). A cap the
//! limit cannot honour would fail at the worst moment, inside SELECT or an
//! LMTP delivery, so the server lowers it at start and says so.

use std::io;

/// Descriptors kept free for everything that is not a client connection:
/// open mailboxes (four files each), listeners, io_uring and the blocking
/// pool, and the transient duplicate made when a connection moves to its
/// user's worker.
pub const RESERVED: u64 = 512;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard).
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // None is unlimited.
    let (soft, hard) = (lim.current.unwrap_or(u64::MAX), lim.maximum.unwrap_or(u64::MAX));
    if soft < hard && setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum }).is_ok() {
        return Ok((hard, hard));
    }
    Ok((soft, hard))
}

/// The most connections `soft` open files can serve.
pub fn connection_cap(configured: usize, soft: u64) -> usize {
    configured.min(soft.saturating_sub(RESERVED).min(usize::MAX as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_leaves_room_for_the_store() {
        assert_eq!(connection_cap(19_000, 20_000), 19_000);
        assert_eq!(connection_cap(50_000, 20_000), 20_000 - RESERVED as usize);
        assert_eq!(connection_cap(100, 256), 0);
        let (soft, hard) = raise_nofile().unwrap();
        // An unlimited hard limit cannot be the soft one (fs.nr_open caps it).
        assert!(soft == hard || hard == u64::MAX, "the soft limit is raised to the hard one: {soft} < {hard}");
    }
}
