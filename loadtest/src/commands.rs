//! `ringmail-load commands`: the latency of single commands on one
//! connection, each run a number of times, the first run reported apart
//! (servers that build an index on first use, as Dovecot does for SORT and
//! THREAD, pay for it there). With arrivals, each command is also timed
//! right after a new message was appended to the mailbox (what a server
//! kept for the command must then be brought up to date, or computed
//! again). Plain blocking I/O: one connection, one command at a time,
//! nothing for an event loop to do.

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
    /// Median of the runs right after an arrival (None: not asked for).
    pub after_arrival: Option<Duration>,
    /// Bytes of the last run's response.
    pub bytes: usize,
}

/// One connection, a command at a time (also `scale`'s).
pub(crate) struct Session {
    stream: TcpStream,
    lines: LineReader,
    /// Read but not yet fed to `lines`.
    buf: Vec<u8>,
    start: usize,
    tag: u32,
}

impl Session {
    /// Connects, reads the greeting and logs in.
    pub(crate) fn login(target: SocketAddr, user: &str, password: &str, timeout: Duration) -> Result<Session, String> {
        let stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect {target}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut s = Session { stream, lines: LineReader::default(), buf: Vec::new(), start: 0, tag: 0 };
        s.line()?;
        s.run(&format!("LOGIN {} {}", crate::conn::quote(user), crate::conn::quote(password)))?;
        Ok(s)
    }

    /// The MESSAGES count of STATUS.
    pub(crate) fn status_messages(&mut self, mailbox: &str) -> Result<u64, String> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        self.stream.write_all(format!("{tag} STATUS {} (MESSAGES)\r\n", crate::conn::quote(mailbox)).as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut messages = None;
        loop {
            self.line()?;
            let head = String::from_utf8_lossy(self.lines.head()).into_owned();
            if let Some(rest) = head.strip_prefix("* STATUS ") {
                messages = rest.rsplit_once("MESSAGES ").and_then(|(_, n)| n.trim_end_matches(')').split_whitespace().next()?.parse().ok());
            } else if head.starts_with(&format!("{tag} ")) {
                return messages.ok_or_else(|| format!("STATUS {mailbox}: {head}"));
            }
        }
    }

    /// One APPEND of several messages (MULTIAPPEND, RFC 3502), with
    /// non-synchronizing literals (LITERAL+, RFC 7888).
    pub(crate) fn multiappend(&mut self, mailbox: &str, messages: &[Vec<u8>]) -> Result<usize, String> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        let mut b = format!("{tag} APPEND {}", crate::conn::quote(mailbox)).into_bytes();
        for m in messages {
            b.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
            b.extend_from_slice(m);
        }
        b.extend_from_slice(b"\r\n");
        self.stream.write_all(&b).map_err(|e| format!("write: {e}"))?;
        self.reply(&tag, "APPEND")
    }

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
    pub(crate) fn run(&mut self, command: &str) -> Result<usize, String> {
        self.tag += 1;
        let tag = format!("c{}", self.tag);
        self.stream.write_all(format!("{tag} {command}\r\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
        self.reply(&tag, command)
    }

    /// Sends the literal of a command already begun under `tag`, then CRLF,
    /// and reads to its tagged reply.
    fn run_with_literal(&mut self, literal: &[u8], tag: &str) -> Result<usize, String> {
        self.stream.write_all(literal).and_then(|()| self.stream.write_all(b"\r\n")).map_err(|e| format!("write: {e}"))?;
        self.reply(tag, "APPEND")
    }

    /// Reads to the tagged reply of `command`.
    fn reply(&mut self, tag: &str, command: &str) -> Result<usize, String> {
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

/// What to run: the commands, the mailbox, and how often.
pub struct Plan<'a> {
    pub mailbox: &'a str,
    pub commands: &'a [String],
    pub repeat: usize,
    /// Also time each command `repeat - 1` times, each right after
    /// appending one corpus message (drawn with this seed) to the mailbox.
    pub arrivals: Option<u64>,
}

/// The median of `runs` (sorted here).
fn median(runs: &mut [Duration]) -> Option<Duration> {
    runs.sort_unstable();
    runs.get(runs.len() / 2).copied()
}

/// Logs in, selects the plan's mailbox, and times each of its commands.
pub fn time(target: SocketAddr, user: &str, password: &str, plan: &Plan<'_>, timeout: Duration) -> Result<Vec<Timing>, String> {
    let mut s = Session::login(target, user, password, timeout)?;
    let mailbox = crate::conn::quote(plan.mailbox);
    s.run(&format!("SELECT {mailbox}"))?;
    let mut out = Vec::new();
    let mut appended = 0u64;
    for c in plan.commands {
        let mut runs = Vec::with_capacity(plan.repeat.max(1));
        let mut bytes = 0;
        for _ in 0..plan.repeat.max(1) {
            let t = Instant::now();
            bytes = s.run(c)?;
            runs.push(t.elapsed());
        }
        let first = runs[0];
        let repeated = median(&mut runs[1..]).unwrap_or(first);
        let mut after = Vec::new();
        if let Some(seed) = plan.arrivals {
            for _ in 1..plan.repeat.max(2) {
                appended += 1;
                let m = ringmail_kit::corpus::message(seed, appended);
                // LITERAL+ (RFC 7888): Dovecot and ringmail both offer it.
                s.stream.write_all(format!("a{appended} APPEND {mailbox} {{{}+}}\r\n", m.len()).as_bytes()).map_err(|e| e.to_string())?;
                s.run_with_literal(&m, &format!("a{appended}"))?;
                let t = Instant::now();
                s.run(c)?;
                after.push(t.elapsed());
            }
        }
        out.push(Timing { command: c.clone(), first, repeated, after_arrival: median(&mut after), bytes });
    }
    let _ = s.run("LOGOUT");
    Ok(out)
}

/// The timings as a table.
pub fn table(timings: &[Timing]) -> String {
    let arrivals = timings.iter().any(|t| t.after_arrival.is_some());
    let mut s = format!("{:<52} {:>10} {:>10}", "command", "first ms", "again ms");
    if arrivals {
        s.push_str(&format!(" {:>13}", "arrival ms"));
    }
    s.push_str(&format!(" {:>10}\n", "bytes"));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for t in timings {
        s.push_str(&format!("{:<52} {:>10.2} {:>10.2}", t.command, ms(t.first), ms(t.repeated)));
        if arrivals {
            s.push_str(&format!(" {:>13}", t.after_arrival.map_or("-".to_string(), |d| format!("{:.2}", ms(d)))));
        }
        s.push_str(&format!(" {:>10}\n", t.bytes));
    }
    s
}
