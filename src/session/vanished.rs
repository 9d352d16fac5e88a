//! VANISHED (RFC 7162 3.2.10): expunges told by UID to a QRESYNC client,
//! as they happen and, with `(EARLIER)`, for what it missed while away
//! (SELECT's QRESYNC parameter 3.2.5, UID FETCH's VANISHED modifier 3.2.6).

use crate::proto::{ranges_of, Out, Ranges};
use crate::store::Mailbox;

/// Ranges per VANISHED response at most, so that one line stays small.
const RANGES_PER_LINE: usize = 4096;

/// `* VANISHED [(EARLIER)] uids` for the first ranges of `ranges`;
/// returns how many it named.
pub(crate) fn line(out: &mut Out, earlier: bool, ranges: &[(u32, u32)]) -> usize {
    let n = ranges.len().min(RANGES_PER_LINE);
    out.raw(if earlier { b"* VANISHED (EARLIER) " as &[u8] } else { b"* VANISHED " });
    for (i, &(a, b)) in ranges[..n].iter().enumerate() {
        if i > 0 {
            out.raw(b",");
        }
        out.num(u64::from(a));
        if b != a {
            out.raw(b":").num(u64::from(b));
        }
    }
    out.crlf();
    n
}

/// The UIDs of `within` (`*` standing for the highest UID) that a client
/// who knew the mailbox as of `modseq` has to hear were expunged: from the
/// mailbox's expunge history when it reaches back that far, else every
/// UID of `within` below UIDNEXT that the mailbox no longer has (RFC 7162
/// 5.1: correct, only less compact).
pub(crate) fn since(mb: &Mailbox, modseq: u64, within: &Ranges) -> Vec<(u32, u32)> {
    let top = mb.uidnext().saturating_sub(1);
    if let Some(mut uids) = mb.expunged_after_modseq(modseq) {
        uids.retain(|&u| within.contains(u, top));
        return ranges_of(&uids);
    }
    let present = mb.uids();
    let mut gaps = Vec::new();
    for (lo, hi) in within.resolve(top) {
        let (lo, hi) = (lo.max(1), hi.min(top));
        if lo > hi {
            continue;
        }
        let mut next = lo;
        for u in present.iter_from(present.partition_point(|u| u < lo)) {
            if u > hi {
                break;
            }
            if u > next {
                gaps.push((next, u - 1));
            }
            next = u + 1;
        }
        if next <= hi {
            gaps.push((next, hi));
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lines() {
        assert_eq!(ranges_of(&[1, 2, 3, 7, 9, 10]), [(1, 3), (7, 7), (9, 10)]);
        let mut out = Out::new();
        line(&mut out, true, &[(1, 3), (7, 7)]);
        assert_eq!(out.flatten(), b"* VANISHED (EARLIER) 1:3,7\r\n");
    }
}
