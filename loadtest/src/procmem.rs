//! A server's memory from /proc: resident, proportional and private bytes
//! of one or more processes (optionally with all their descendants, for
//! servers such as Dovecot that run a process per connection or per login).

use std::io;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    /// Resident set (VmRSS), bytes.
    pub rss: u64,
    /// Proportional set: shared pages divided among their users, bytes.
    pub pss: u64,
    /// Pages only these processes map (Private_Clean + Private_Dirty), bytes.
    pub private: u64,
    /// Anonymous memory (heap, stacks): what the process allocated itself,
    /// without file mappings such as a server's memory-mapped mail, whose
    /// pages belong to the page cache and count as private while only one
    /// process maps them.
    pub anonymous: u64,
    pub processes: usize,
}

/// Fields of /proc/PID/smaps_rollup, in bytes.
pub fn parse_rollup(text: &str) -> Mem {
    let mut m = Mem { processes: 1, ..Mem::default() };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(kb)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match key {
            "Rss:" => m.rss += kb * 1024,
            "Pss:" => m.pss += kb * 1024,
            "Private_Clean:" | "Private_Dirty:" => m.private += kb * 1024,
            "Anonymous:" => m.anonymous += kb * 1024,
            _ => {}
        }
    }
    m
}

/// The parent PID from /proc/PID/stat (the field after the `(comm)`).
fn parent_of(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pids` and, if `tree`, every descendant of them.
pub fn with_descendants(pids: &[u32], tree: bool) -> Vec<u32> {
    let mut all: Vec<u32> = pids.to_vec();
    if !tree {
        return all;
    }
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some(pp) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parent_of) {
                parents.push((pid, pp));
            }
        }
    }
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for &(child, parent) in &parents {
            if parent == p && !all.contains(&child) {
                all.push(child);
            }
        }
        i += 1;
    }
    all
}

/// Sum over the processes (and their descendants when `tree`).
pub fn measure(pids: &[u32], tree: bool) -> io::Result<Mem> {
    let mut total = Mem::default();
    for pid in with_descendants(pids, tree) {
        let text = match std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            Ok(t) => t,
            // A child that exited meanwhile.
            Err(_) if !pids.contains(&pid) => continue,
            Err(e) => return Err(e),
        };
        let m = parse_rollup(&text);
        total.rss += m.rss;
        total.pss += m.pss;
        total.private += m.private;
        total.anonymous += m.anonymous;
        total.processes += 1;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_and_stat_parse() {
        let m = parse_rollup(
            "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1024 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 900 kB\nAnonymous: 800 kB\n",
        );
        assert_eq!(m, Mem { rss: 2 << 20, pss: 1 << 20, private: 1000 * 1024, anonymous: 800 * 1024, processes: 1 });
        assert_eq!(parent_of("123 (a (b) c) S 77 123 123 0"), Some(77));
    }

    #[test]
    fn measures_this_process_and_finds_children() {
        let me = std::process::id();
        let m = measure(&[me], false).unwrap();
        assert!(m.rss > 0 && m.private > 0 && m.processes == 1);
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(with_descendants(&[me], true).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
