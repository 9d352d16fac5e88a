//! `ringmail-load commands`: the latency of single commands on one
//! connection, each run a number of times, the first run reported apart
//! (servers that build an index on first use, as Dovecot does for SORT and
//! THREAD, pay for it there). Plain blocking I/O: one connection, one
//! command at a time, nothing for an event loop to do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What SORT and THREAD cost a webmail page view (issue 14's forms).
pub const WEBMAIL: &[&str] = &[
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (FROM) UTF-8 ALL",
    "SORT (SIZE) UTF-8 ALL",
    "SORT (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT RETURN (PARTIAL 1:50) (REVERSE DATE) UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD REFS UTF-8 ALL",
    "SEARCH SUBJECT nothing-matches-this",
];

/// The timings of one command.
pub struct Timing {
    pub command: String,
    pub first: Duration,
    /// Median of the runs after the first.
    pub repeated: Duration,
    /// Bytes of the last run's response.
    pub bytes: usize,
}

struct Session {
    r: BufReader<TcpStream>,
    tag: u32,
}

impl Session {
    fn line(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        buf.clear();
        let n = self.r.read_until(b'\n', buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(())
    }

    /// Sends one command and reads to its tagged reply (literals skipped
    /// by their length); the reply's byte count, or the NO/BAD line.
    fn run(&mut self, command: &str) -> Result<usize, String> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        self.r.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut bytes = 0;
        let mut buf = Vec::new();
        loop {
            self.line(&mut buf)?;
            bytes += buf.len();
            // A line ending in {n} is followed by n bytes of literal.
            let body = buf.strip_suffix(b"\r\n").unwrap_or(&buf);
            if let Some(open) = body.strip_suffix(b"}").and_then(|b| b.iter().rposition(|&c| c == b'{').map(|i| &b[i + 1..])) {
                if let Some(n) = std::str::from_utf8(open).ok().and_then(|s| s.trim_end_matches('+').parse::<u64>().ok()) {
                    bytes += std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink()).map_err(|e| format!("read: {e}"))? as usize;
                    continue;
                }
            }
            if let Some(rest) = buf.strip_prefix(tag.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
                return if rest.starts_with(b"OK") { Ok(bytes) } else { Err(format!("{command}: {}", String::from_utf8_lossy(&buf).trim_end())) };
            }
        }
    }
}

/// Logs in, selects `mailbox`, and times each of `commands` `repeat` times.
pub fn time(
    target: SocketAddr,
    user: &str,
    password: &str,
    mailbox: &str,
    commands: &[String],
    repeat: usize,
    timeout: Duration,
) -> Result<Vec<Timing>, String> {
    let stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect {target}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut s = Session { r: BufReader::new(stream), tag: 0 };
    let mut greeting = Vec::new();
    s.line(&mut greeting)?;
    s.run(&format!("LOGIN {} {}", crate::conn::quote(user), crate::conn::quote(password)))?;
    s.run(&format!("SELECT {}", crate::conn::quote(mailbox)))?;
    let mut out = Vec::new();
    for c in commands {
        let mut runs = Vec::with_capacity(repeat.max(1));
        let mut bytes = 0;
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            bytes = s.run(c)?;
            runs.push(t.elapsed());
        }
        let first = runs[0];
        let mut rest = runs.split_off(1);
        rest.sort_unstable();
        let repeated = rest.get(rest.len() / 2).copied().unwrap_or(first);
        out.push(Timing { command: c.clone(), first, repeated, bytes });
    }
    let _ = s.run("LOGOUT");
    Ok(out)
}

/// The timings as a table.
pub fn table(timings: &[Timing]) -> String {
    let mut s = format!("{:<52} {:>10} {:>10} {:>10}\n", "command", "first ms", "again ms", "bytes");
    for t in timings {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        s.push_str(&format!("{:<52} {:>10.2} {:>10.2} {:>10}\n", t.command, ms(t.first), ms(t.repeated), t.bytes));
    }
    s
}
