//! Sequence sets (RFC 9051 9, `sequence-set`): normalized when parsed,
//! resolved against a mailbox only as far as a command walks them.
//!
//! A set is kept as sorted, merged ranges of numbers plus what its `*`
//! ranges cover, so `1:*,1:*,...` (16,000 times in one line) is one range,
//! and no command ever expands a set into a list of its members. Every
//! number from 1 to 4294967295 is valid; `*` is not a number but "the
//! largest number in use".

use std::fmt;

/// One element of a sequence set as written: `n`, `n:m`, `*`, `n:*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNum,
    pub end: SeqNum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Num(u32),
    /// `*`: the largest number in use (RFC 9051 9, `seq-number`).
    Star,
}

/// Numbered ranges, normalized: sorted, merged, each `lo <= hi`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranges {
    numbers: Vec<(u32, u32)>,
    /// For ranges with a `*` end, the smallest and largest other end (a
    /// lone `*` has none: `(u32::MAX, 0)`). `n:*` covers `min(n, max)..=max(n,
    /// max)` whatever `max` is, so their union is covered by these two.
    star: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Ranges),
    /// `$`: the result saved by `SEARCH RETURN (SAVE)` (RFC 5182).
    Saved,
}

/// Ascending numbers as inclusive ranges of consecutive ones.
pub fn ranges_of(numbers: &[u32]) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = Vec::new();
    for &u in numbers {
        match v.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(u) => last.1 = u,
            _ => v.push((u, u)),
        }
    }
    v
}

/// Merges sorted ranges that touch or overlap.
fn merge(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

impl Ranges {
    pub fn from_ranges(rs: &[SeqRange]) -> Ranges {
        let mut numbers = Vec::with_capacity(rs.len());
        let mut star: Option<(u32, u32)> = None;
        for r in rs {
            match (r.start, r.end) {
                (SeqNum::Num(a), SeqNum::Num(b)) => numbers.push((a.min(b), a.max(b))),
                (SeqNum::Num(n), SeqNum::Star) | (SeqNum::Star, SeqNum::Num(n)) => {
                    let s = star.get_or_insert((u32::MAX, 0));
                    *s = (s.0.min(n), s.1.max(n));
                }
                (SeqNum::Star, SeqNum::Star) => {
                    star.get_or_insert((u32::MAX, 0));
                }
            }
        }
        Ranges { numbers: merge(numbers), star }
    }

    /// Whether the set names `*` (the last message, whatever its number).
    pub fn has_star(&self) -> bool {
        self.star.is_some()
    }

    /// The set with `*` standing for `max`: sorted, merged, inclusive ranges.
    pub fn resolve(&self, max: u32) -> Vec<(u32, u32)> {
        let mut v = self.numbers.clone();
        if let Some((lo, hi)) = self.star {
            v.push((lo.min(max), hi.max(max)));
            return merge(v);
        }
        v
    }

    /// Whether `n` is in the set, `*` standing for `max`.
    pub fn contains(&self, n: u32, max: u32) -> bool {
        if let Some((lo, hi)) = self.star {
            if lo.min(max) <= n && n <= hi.max(max) {
                return true;
            }
        }
        let i = self.numbers.partition_point(|&(_, hi)| hi < n);
        self.numbers.get(i).is_some_and(|&(lo, _)| lo <= n)
    }

    /// The normalized ranges as written ranges (for rendering).
    pub fn to_ranges(&self) -> Vec<SeqRange> {
        let mut v: Vec<SeqRange> = self.numbers.iter().map(|&(a, b)| SeqRange { start: SeqNum::Num(a), end: SeqNum::Num(b) }).collect();
        if let Some((lo, hi)) = self.star {
            if lo != u32::MAX {
                v.push(SeqRange { start: SeqNum::Num(lo), end: SeqNum::Star });
            }
            if hi != 0 && hi != lo {
                v.push(SeqRange { start: SeqNum::Num(hi), end: SeqNum::Star });
            }
            if lo == u32::MAX {
                v.push(SeqRange { start: SeqNum::Star, end: SeqNum::Star });
            }
        }
        v
    }
}

impl SequenceSet {
    pub fn single(n: u32) -> Self {
        SequenceSet::Ranges(Ranges { numbers: vec![(n, n)], star: None })
    }

    pub fn from_ranges(rs: &[SeqRange]) -> Self {
        SequenceSet::Ranges(Ranges::from_ranges(rs))
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNum::Num(n) => write!(f, "{n}"),
            SeqNum::Star => f.write_str("*"),
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(r) => {
                for (i, r) in r.to_ranges().iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if r.start == r.end {
                        write!(f, "{}", r.start)?;
                    } else {
                        write!(f, "{}:{}", r.start, r.end)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A list of numbers as a set, in the order given, ascending runs written
/// as ranges: `1,2,3,7` is `1:3,7` (COPYUID, MODIFIED, ESEARCH). A
/// descending run stays a list (`7,6,5`): a sorted result keeps its order
/// (RFC 5267 section 3.2), and `7:5` would read as the unordered range
/// 5 to 7 to a client that parses it as an ordinary set, as Dovecot's
/// output and imaptest's sort-partial expect.
pub fn compact(numbers: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut j = i;
        while numbers.get(j + 1).is_some_and(|&n| Some(n) == numbers[j].checked_add(1)) {
            j += 1;
        }
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&start.to_string());
        if j > i {
            s.push(':');
            s.push_str(&numbers[j].to_string());
        }
        i = j + 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_runs_only_keeping_the_order() {
        assert_eq!(compact(&[1, 2, 3, 7, 6, 5, 9, 4]), "1:3,7,6,5,9,4");
        assert_eq!(compact(&[5, 3, 4, 2, 1]), "5,3:4,2,1");
        assert_eq!(compact(&[u32::MAX - 1, u32::MAX, 1]), "4294967294:4294967295,1");
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[5]), "5");
    }

    fn set(s: &str) -> Ranges {
        match crate::proto::parse::parse_sequence_set(s.as_bytes()).unwrap() {
            SequenceSet::Ranges(r) => r,
            SequenceSet::Saved => unreachable!(),
        }
    }

    #[test]
    fn normalized_at_parse() {
        let r = set("5:3,1,2,10:12,11,4294967295");
        assert_eq!(r.resolve(100), vec![(1, 5), (10, 12), (u32::MAX, u32::MAX)]);
        // 16,000 copies of 1:* are one range.
        let line = vec!["1:*"; 16_000].join(",");
        assert_eq!(set(&line).resolve(50_000), vec![(1, 50_000)]);
        assert_eq!(set("*").resolve(7), vec![(7, 7)]);
        assert_eq!(set("10:*").resolve(7), vec![(7, 10)], "n:* when n > max");
        assert_eq!(set("2:*,10:*").resolve(5), vec![(2, 10)]);
        assert!(set("3,7:9,*").contains(8, 20) && set("3,7:9,*").contains(20, 20) && !set("3,7:9,*").contains(10, 20));
    }

    #[test]
    fn rendering_round_trips() {
        for s in ["1:5,7", "4294967295", "*", "3:*", "1,3:*,9:*", "1:4294967295"] {
            let r = set(s);
            assert_eq!(set(&SequenceSet::Ranges(r.clone()).to_string()), r, "{s}");
        }
    }
}
