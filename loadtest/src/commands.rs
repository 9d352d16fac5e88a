//! `ringmail-load commands`: the latency of single commands on one
//! connection, each run a number of times, the first run reported apart
//! (servers that build an index on first use, as Dovecot does for SORT and
//! THREAD, pay for it there). Plain blocking I/O: one connection, one
//! command at a time, nothing for an event loop to do.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::reply::{self, LineReader, Status};

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
    stream: TcpStream,
    lines: LineReader,
    /// Read but not yet fed to `lines`.
    buf: Vec<u8>,
    start: usize,
    tag: u32,
}

impl Session {
    /// The next complete logical line (literals skipped by `LineReader`);
    /// read it from `self.lines`.
    fn line(&mut self) -> Result<(), String> {
        self.lines.next();
        loop {
            let (used, complete) = self.lines.feed(&self.buf[self.start..]).map_err(|e| format!("{e:?}"))?;
            self.start += used;
            if complete {
                return Ok(());
            }
            self.buf.resize(64 << 10, 0);
            let n = self.stream.read(&mut self.buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.truncate(n);
            self.start = 0;
        }
    }

    /// Sends one command and reads to its tagged reply; the reply's byte
    /// count, or the NO/BAD line.
    fn run(&mut self, command: &str) -> Result<usize, String> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        self.stream.write_all(format!("{tag} {command}\r\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut bytes = 0;
        loop {
            self.line()?;
            bytes += self.lines.wire_len() as usize;
            let p = reply::parts(self.lines.head());
            if p.first == tag.as_bytes() {
                return match reply::status_of(p.second) {
                    Status::Ok => Ok(bytes),
                    _ => Err(format!("{command}: {}", String::from_utf8_lossy(self.lines.head()))),
                };
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
    let mut s = Session { stream, lines: LineReader::default(), buf: Vec::new(), start: 0, tag: 0 };
    s.line()?;
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
