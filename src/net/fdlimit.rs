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
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
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
        assert!(soft == hard || hard == libc::RLIM_INFINITY, "the soft limit is raised to the hard one: {soft} < {hard}");
    }
}
