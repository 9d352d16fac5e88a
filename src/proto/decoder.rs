//! Incremental, literal-aware framing of client input into commands.
//!
//! Bytes go in with [`Decoder::feed`] (or straight into the buffer lent out by
//! [`Decoder::take_buffer`]); [`Decoder::next`] hands out one [`Event`] at a
//! time: a complete command, a request to send a continuation (`+`) for a
//! synchronizing literal, the pieces of an APPEND message streamed as they
//! arrive, or an error to answer. It reads no socket and no clock, and
//! holds at most what [`Limits`] allows.

use super::command::{AppendHeader, AppendMore, Command};
use std::sync::Arc;

use super::limits::Limits;
use super::parse::{parse_append_more, parse_append_prefix, parse_command, parse_tag};
use super::scan::{Announce, Kind, ScanErrorKind, Scanner, Token};

/// What the decoder found.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    /// A complete, well-formed command.
    Command(Command),
    /// Nothing complete yet: read more input.
    NeedMore,
    /// A synchronizing literal was announced and fits the limits: send a
    /// continuation request (`+ ...`) so the client sends its data.
    Continue,
    /// An APPEND is about to send its message; answer with
    /// [`Decoder::accept_append`] or [`Decoder::reject_append`].
    AppendStart(AppendHeader),
    /// Some bytes of the APPEND message, in order.
    AppendData(&'a [u8]),
    /// The APPEND message is complete; `Err` when what followed it was not
    /// the end of the command (nothing may be stored then).
    AppendEnd(Result<(), String>),
    /// MULTIAPPEND (RFC 3502): the message literal ended and another one is
    /// announced; answer with [`Decoder::accept_append`] or
    /// [`Decoder::reject_append`] as for [`Event::AppendStart`].
    AppendNext(AppendMore),
    /// A line answering an AUTHENTICATE challenge (after [`Decoder::expect_auth_line`]).
    AuthLine(&'a [u8]),
    /// The line ending IDLE; `false` when it was not `DONE`.
    IdleDone(bool),
    /// A malformed command, already skipped: answer BAD (with the tag if known).
    Bad { tag: Option<String>, message: String },
    /// Input the connection cannot recover from: answer BYE and close.
    Fatal(&'static str),
}

/// The error to answer once the rest of a bad command has been skipped.
#[derive(Debug)]
struct Report {
    tag: Option<String>,
    message: String,
}

fn report(tag: Option<String>, message: impl Into<String>) -> Option<Box<Report>> {
    Some(Box::new(Report { tag, message: message.into() }))
}

#[derive(Debug)]
enum State {
    /// Reading the lines of a command.
    Line,
    /// Waiting for the bytes of an accepted literal, to be kept in the command.
    Literal { len: usize, gap: u8 },
    /// An APPEND header was returned; waiting for accept/reject. `close`:
    /// the literal is `UTF8 (`'s (RFC 6855 4), a `)` follows it.
    AppendVerdict { len: u64, nonsync: bool, close: bool },
    /// Streaming the APPEND message.
    AppendData { remaining: u64, close: bool },
    /// The APPEND message is done; its line must end now (after the `)`
    /// of a UTF8 literal).
    AppendTail { close: bool },
    /// Throwing away literal data the client sends regardless (non-synchronizing).
    Skip { remaining: u64, report: Option<Box<Report>> },
    /// Throwing away the rest of a line, then reporting (if anything).
    Discard { discarded: usize, report: Option<Box<Report>> },
    /// The next line answers an AUTHENTICATE challenge.
    AuthLine,
    /// The next line should be `DONE`.
    IdleDone,
}

pub struct Decoder {
    /// Unconsumed input; `buf[start..]` is the command in progress and beyond.
    buf: Vec<u8>,
    start: usize,
    /// First byte not yet framed.
    pos: usize,
    /// Tokens of the command in progress; offsets are relative to `start`.
    tokens: Vec<Token>,
    scanner: Scanner,
    limits: Arc<Limits>,
    state: State,
}

impl Decoder {
    /// A decoder with these limits (shared: every connection of a listener
    /// uses the same ones).
    pub fn new(limits: Arc<Limits>) -> Self {
        Self::with_scanner(limits, Scanner::default())
    }

    pub fn with_scanner(limits: Arc<Limits>, scanner: Scanner) -> Self {
        let limits =
            if limits.line_max > super::scan::MAX_TOKEN_LEN || limits.literal_max > super::scan::MAX_TOKEN_LEN { Arc::new(limits.clamped()) } else { limits };
        Decoder { buf: Vec::new(), start: 0, pos: 0, tokens: Vec::new(), scanner, limits, state: State::Line }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Other limits from the next command on (after authentication).
    pub fn set_limits(&mut self, limits: Arc<Limits>) {
        self.limits =
            if limits.line_max > super::scan::MAX_TOKEN_LEN || limits.literal_max > super::scan::MAX_TOKEN_LEN { Arc::new(limits.clamped()) } else { limits };
    }

    /// Appends input.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Whether nothing is buffered and no command is half-received (the
    /// buffer may be given back). Waiting for an IDLE `DONE` or an
    /// AUTHENTICATE line counts as empty: no bytes of it arrived yet.
    pub fn is_empty(&self) -> bool {
        self.start >= self.buf.len() && matches!(self.state, State::Line | State::IdleDone | State::AuthLine) && self.tokens.is_empty()
    }

    /// Lends out the input buffer so a read can append to it directly; give
    /// it back with [`Decoder::restore_buffer`]. The buffer is compacted first.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.compact();
        std::mem::take(&mut self.buf)
    }

    /// Frees the token vector and scanner bitmaps of an empty decoder (a
    /// waiting connection keeps no per-command memory).
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.tokens = Vec::new();
            self.scanner.release();
        }
    }

    pub fn restore_buffer(&mut self, buf: Vec<u8>) {
        debug_assert!(self.buf.is_empty());
        self.buf = buf;
    }

    /// Moves consumed bytes out of the buffer.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.pos -= self.start;
        self.start = 0;
        self.scanner.reset();
    }

    /// The next line will be an AUTHENTICATE response, not a command.
    pub fn expect_auth_line(&mut self) {
        self.state = State::AuthLine;
    }

    /// The next line should be `DONE` (RFC 2177).
    pub fn expect_idle_done(&mut self) {
        self.state = State::IdleDone;
    }

    /// Lets the client send the APPEND message announced by the last
    /// [`Event::AppendStart`]. For a synchronizing literal the caller sends `+`.
    pub fn accept_append(&mut self) {
        if let State::AppendVerdict { len, close, .. } = self.state {
            self.state = if len == 0 { State::AppendTail { close } } else { State::AppendData { remaining: len, close } };
        }
    }

    /// Refuses the APPEND (the caller answers NO/BAD). Data the client sends
    /// anyway (non-synchronizing literal) is skipped, or, when it is more than
    /// we are willing to read, the connection must end: then `false`.
    pub fn reject_append(&mut self) -> bool {
        if let State::AppendVerdict { len, nonsync, .. } = self.state {
            if nonsync {
                if len > self.limits.discard_max as u64 {
                    return false;
                }
                self.state = State::Skip { remaining: len, report: None };
            } else {
                self.state = State::Line;
            }
        }
        true
    }

    /// Ends the current unit: everything up to `pos` is consumed.
    fn consume(&mut self) {
        self.start = self.pos;
        self.tokens.clear();
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.pos = 0;
            self.scanner.reset();
        }
    }

    /// The next event. Call until it returns [`Event::NeedMore`].
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Event<'_> {
        loop {
            match std::mem::replace(&mut self.state, State::Line) {
                State::Line => {
                    let Some(lf) = self.scanner.find_lf(&self.buf, self.pos) else {
                        if self.buf.len() - self.pos > self.limits.line_max {
                            let tag = self.tag_of_partial_line();
                            let discarded = self.buf.len() - self.pos;
                            self.pos = self.buf.len();
                            self.consume();
                            self.state = State::Discard { discarded, report: report(tag, "Command line too long") };
                            continue;
                        }
                        return Event::NeedMore;
                    };
                    let line_end = if lf > self.pos && self.buf[lf - 1] == b'\r' { lf - 1 } else { lf };
                    let line_start = self.pos;
                    self.pos = lf + 1;
                    if line_end - line_start > self.limits.line_max || self.pos - self.start > self.limits.command_max {
                        let tag = parse_tag(&self.buf[self.start..], &self.tokens).or_else(|| self.tag_at(line_start, line_end));
                        self.consume();
                        return Event::Bad { tag, message: "Command line too long".into() };
                    }
                    let scanned = self.scanner.tokenize(&self.buf, line_start..line_end, self.start, &mut self.tokens);
                    match scanned {
                        Err(e) => {
                            let tag = parse_tag(&self.buf[self.start..], &self.tokens);
                            let message = match e.kind {
                                ScanErrorKind::Control => "Control character in command",
                                ScanErrorKind::UnterminatedQuote => "Unterminated quoted string",
                                ScanErrorKind::BadLiteral => "Malformed literal",
                            };
                            self.consume();
                            return Event::Bad { tag, message: message.into() };
                        }
                        Ok(None) => {
                            if matches!(self.tokens[..], [Token { kind: Kind::Eol, gap: 0, .. }]) {
                                // An empty line: ignore it like Dovecot does.
                                self.consume();
                                continue;
                            }
                            let result = parse_command(&self.buf[self.start..self.pos], &self.tokens, self.limits.nesting_max);
                            self.consume();
                            return match result {
                                Ok(c) => Event::Command(c),
                                Err(e) => Event::Bad { tag: e.tag, message: e.message },
                            };
                        }
                        Ok(Some(a)) => {
                            if let Some(ev) = self.announced(a) {
                                return ev;
                            }
                        }
                    }
                }
                State::Literal { len, gap } => {
                    if self.buf.len() - self.pos < len {
                        self.state = State::Literal { len, gap };
                        return Event::NeedMore;
                    }
                    let s = (self.pos - self.start) as u32;
                    self.tokens.push(Token::new(Kind::Literal, gap, s, s + len as u32));
                    self.pos += len;
                    self.state = State::Line;
                }
                st @ State::AppendVerdict { .. } => {
                    // The caller must decide first; asking again changes nothing.
                    self.state = st;
                    return Event::NeedMore;
                }
                State::AppendData { remaining, close } => {
                    let avail = (self.buf.len() - self.pos) as u64;
                    if avail == 0 {
                        self.state = State::AppendData { remaining, close };
                        return Event::NeedMore;
                    }
                    let n = avail.min(remaining) as usize;
                    let from = self.pos;
                    self.pos += n;
                    self.start = self.pos;
                    self.state = if remaining == n as u64 { State::AppendTail { close } } else { State::AppendData { remaining: remaining - n as u64, close } };
                    return Event::AppendData(&self.buf[from..from + n]);
                }
                State::AppendTail { close } => {
                    let Some(lf) = self.scanner.find_lf(&self.buf, self.pos) else {
                        if self.buf.len() - self.pos > self.limits.line_max {
                            self.pos = self.buf.len();
                            self.consume();
                            self.state = State::Discard { discarded: 0, report: None };
                            return Event::AppendEnd(Err("Command line too long".into()));
                        }
                        self.state = State::AppendTail { close };
                        return Event::NeedMore;
                    };
                    let rest = &self.buf[self.pos..lf];
                    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
                    let rest = match (close, rest.strip_prefix(b")")) {
                        (false, _) => rest,
                        (true, Some(r)) => r,
                        (true, None) => {
                            self.pos = lf + 1;
                            self.consume();
                            self.state = State::Line;
                            return Event::AppendEnd(Err("Expected ) after the UTF8 literal".into()));
                        }
                    };
                    if rest.is_empty() {
                        self.pos = lf + 1;
                        self.consume();
                        self.state = State::Line;
                        return Event::AppendEnd(Ok(()));
                    }
                    let more = next_append_message(rest);
                    // What to skip when it is not (read before `consume`).
                    let announced = more.is_err().then(|| trailing_announce(rest)).flatten();
                    self.pos = lf + 1;
                    self.consume();
                    self.state = State::Line;
                    let message = match more {
                        Ok(m) => {
                            // MULTIAPPEND (RFC 3502): another message follows.
                            self.state = State::AppendVerdict { len: m.size, nonsync: m.nonsync, close: m.utf8 };
                            return Event::AppendNext(m);
                        }
                        Err(message) => message,
                    };
                    if let Some(a) = announced.filter(|a| a.nonsync) {
                        // Skip the data the client sends anyway.
                        if a.len > self.limits.discard_max as u64 {
                            return Event::Fatal("Literal too large");
                        }
                        self.state = State::Skip { remaining: a.len, report: None };
                    }
                    return Event::AppendEnd(Err(message));
                }
                State::Skip { remaining, mut report } => {
                    let avail = (self.buf.len() - self.pos) as u64;
                    let n = avail.min(remaining);
                    self.pos += n as usize;
                    self.consume();
                    if n < remaining {
                        self.state = State::Skip { remaining: remaining - n, report: report.take() };
                        return Event::NeedMore;
                    }
                    self.state = State::Discard { discarded: 0, report: report.take() };
                }
                State::Discard { discarded, mut report } => {
                    let Some(lf) = self.scanner.find_lf(&self.buf, self.pos) else {
                        // Keep the last few bytes: if the line ends in a
                        // literal announcement (`{123+}`) split across reads,
                        // its data must be skipped too, never read as commands.
                        let drop = (self.buf.len() - self.pos).saturating_sub(ANNOUNCE_MAX);
                        let discarded = discarded + drop;
                        self.pos += drop;
                        self.consume();
                        if discarded > self.limits.discard_max {
                            return Event::Fatal("Command line too long");
                        }
                        self.state = State::Discard { discarded, report: report.take() };
                        return Event::NeedMore;
                    };
                    let line = &self.buf[self.pos..lf];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let more = trailing_announce(line);
                    self.pos = lf + 1;
                    self.consume();
                    let report = report.take();
                    match more {
                        Some(a) if a.nonsync => {
                            if a.len > self.limits.discard_max as u64 {
                                return Event::Fatal("Literal too large");
                            }
                            self.state = State::Skip { remaining: a.len, report };
                            continue;
                        }
                        _ => self.state = State::Line,
                    }
                    if let Some(r) = report {
                        return Event::Bad { tag: r.tag, message: r.message };
                    }
                }
                st @ (State::AuthLine | State::IdleDone) => {
                    let idle = matches!(st, State::IdleDone);
                    let Some(lf) = self.scanner.find_lf(&self.buf, self.pos) else {
                        if self.buf.len() - self.pos > self.limits.line_max {
                            return Event::Fatal("Line too long");
                        }
                        self.state = st;
                        return Event::NeedMore;
                    };
                    let from = self.pos;
                    let end = if lf > from && self.buf[lf - 1] == b'\r' { lf - 1 } else { lf };
                    self.pos = lf + 1;
                    self.start = self.pos;
                    let line = &self.buf[from..end];
                    return if idle { Event::IdleDone(line.eq_ignore_ascii_case(b"DONE")) } else { Event::AuthLine(line) };
                }
            }
        }
    }

    /// Handles a literal announced at the end of the line just framed.
    /// Returns the event to hand out, or None to keep framing.
    fn announced(&mut self, a: Announce) -> Option<Event<'static>> {
        let first_literal = !self.tokens.iter().any(|t| t.kind == Kind::Literal);
        if first_literal {
            if let Some(r) = parse_append_prefix(&self.buf[self.start..self.pos], &self.tokens, a.gap) {
                match r {
                    Ok(mut h) => {
                        h.size = a.len;
                        h.binary = a.binary;
                        h.nonsync = a.nonsync;
                        self.consume();
                        self.state = State::AppendVerdict { len: a.len, nonsync: a.nonsync, close: h.utf8 };
                        return Some(Event::AppendStart(h));
                    }
                    Err(e) => return Some(self.refuse_literal(a, e.tag, e.message)),
                }
            }
        }
        let held = self.pos - self.start;
        if a.len > self.limits.literal_max as u64 || held as u64 + a.len > self.limits.command_max as u64 {
            let tag = parse_tag(&self.buf[self.start..], &self.tokens);
            return Some(self.refuse_literal(a, tag, "Literal too large".into()));
        }
        self.state = State::Literal { len: a.len as usize, gap: a.gap };
        if a.nonsync {
            None
        } else {
            Some(Event::Continue)
        }
    }

    /// Rejects a command at a literal announcement. A synchronizing literal
    /// is simply answered (the client waits for `+` and gets the error); a
    /// non-synchronizing one is on its way and is skipped first.
    fn refuse_literal(&mut self, a: Announce, tag: Option<String>, message: String) -> Event<'static> {
        self.consume();
        if !a.nonsync {
            self.state = State::Line;
            return Event::Bad { tag, message };
        }
        if a.len > self.limits.discard_max as u64 {
            return Event::Fatal("Literal too large");
        }
        self.state = State::Skip { remaining: a.len, report: report(tag, message) };
        match self.next() {
            Event::Bad { tag, message } => Event::Bad { tag, message },
            Event::Fatal(m) => Event::Fatal(m),
            _ => Event::NeedMore,
        }
    }

    fn tag_at(&self, from: usize, to: usize) -> Option<String> {
        let line = &self.buf[from..to];
        let end = line.iter().position(|&b| b == b' ')?;
        let tag = &line[..end];
        (!tag.is_empty() && tag.len() <= self.limits.tag_max && tag.iter().all(|b| b.is_ascii_graphic() && !b"+(){%*\"\\".contains(b)))
            .then(|| String::from_utf8_lossy(tag).into_owned())
    }

    fn tag_of_partial_line(&self) -> Option<String> {
        if !self.tokens.is_empty() {
            return parse_tag(&self.buf[self.start..], &self.tokens);
        }
        let end = (self.pos + self.limits.tag_max + 1).min(self.buf.len());
        self.tag_at(self.pos, end)
    }
}

/// A literal announcement at the very end of a line being discarded.
/// Longest literal announcement: `{`, 20 digits, `+`, `}`, and a CR.
const ANNOUNCE_MAX: usize = 24;

/// The next MULTIAPPEND message announced by the rest of the line after a
/// message literal (` [flags] [date-time] {n}`), or why it is not one.
fn next_append_message(rest: &[u8]) -> Result<AppendMore, String> {
    const EXPECTED: &str = "Expected end of command after the message literal";
    if rest.len() > super::scan::MAX_TOKEN_LEN {
        return Err(EXPECTED.into());
    }
    let mut toks = Vec::new();
    let a = match super::scan::tokenize_reference(rest, 0, &mut toks) {
        Ok(Some(a)) => a,
        _ => return Err(EXPECTED.into()),
    };
    let (flags, date, utf8) = parse_append_more(rest, &toks, a.gap)?;
    Ok(AppendMore { flags, date, size: a.len, binary: a.binary, nonsync: a.nonsync, utf8 })
}

fn trailing_announce(line: &[u8]) -> Option<Announce> {
    if line.last() != Some(&b'}') {
        return None;
    }
    let open = line.iter().rposition(|&b| b == b'{')?;
    let mut toks = Vec::new();
    super::scan::tokenize_reference(&line[open..], 0, &mut toks).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::CommandBody;

    fn events(input: &[u8]) -> Vec<String> {
        let mut d = Decoder::new(Arc::new(Limits { line_max: 100, command_max: 200, literal_max: 50, discard_max: 1000, ..Limits::DEFAULT }));
        d.feed(input);
        let mut out = Vec::new();
        loop {
            let ev = d.next();
            let s = format!("{ev:?}");
            match ev {
                Event::NeedMore => break,
                Event::AppendStart(_) | Event::AppendNext(_) => {
                    out.push(s);
                    d.accept_append();
                    continue;
                }
                _ => {}
            }
            out.push(s);
        }
        out
    }

    #[test]
    fn commands_and_literals() {
        let e = events(b"a NOOP\r\nb LOGIN {3}\r\nabc {2+}\r\nxy\r\n");
        assert!(e[0].contains("Noop"));
        assert_eq!(e[1], "Continue");
        assert!(e[2].contains("Login") && e[2].contains("[97, 98, 99]") && e[2].contains("[120, 121]"));
    }

    #[test]
    fn append_streams() {
        let e = events(b"a APPEND INBOX {5+}\r\nhello\r\nb NOOP\r\n");
        assert!(e[0].starts_with("AppendStart"));
        assert_eq!(e[1], "AppendData([104, 101, 108, 108, 111])");
        assert_eq!(e[2], "AppendEnd(Ok(()))");
        assert!(e[3].contains("Noop"));
    }

    /// RFC 3502: after a message literal, flags, a date and another literal
    /// announce the next message; refusing it skips the rest of the line.
    #[test]
    fn multiappend_streams_each_message() {
        let e = events(b"a APPEND INBOX {2+}\r\nhi (\\Seen) \" 7-Feb-1994 22:43:04 -0800\" {3+}\r\nabc {1+}\r\nz\r\nb NOOP\r\n");
        assert!(e[0].starts_with("AppendStart"));
        assert_eq!(e[1], "AppendData([104, 105])");
        assert!(e[2].starts_with("AppendNext(AppendMore { flags: [Seen], date: Some(") && e[2].contains("size: 3"), "{}", e[2]);
        assert_eq!(e[3], "AppendData([97, 98, 99])");
        assert!(e[4].starts_with("AppendNext(AppendMore { flags: [], date: None, size: 1"), "{}", e[4]);
        assert_eq!(e[5], "AppendData([122])");
        assert_eq!(e[6], "AppendEnd(Ok(()))");
        assert!(e[7].contains("Noop"));
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        d.feed(b"a APPEND INBOX {2+}\r\nhi {3+}\r\nabc {1+}\r\nz\r\nb NOOP\r\n");
        assert!(matches!(d.next(), Event::AppendStart(_)));
        d.accept_append();
        assert!(matches!(d.next(), Event::AppendData(b"hi")));
        assert!(matches!(d.next(), Event::AppendNext(_)));
        assert!(d.reject_append());
        assert!(matches!(d.next(), Event::Command(c) if c.tag == "b"), "the refused message and the rest of its line are skipped");
    }

    #[test]
    fn long_lines_are_discarded_then_answered() {
        let mut input = b"t1 NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500));
        input.extend_from_slice(b"\r\nt2 NOOP\r\n");
        let e = events(&input);
        assert_eq!(e[0], r#"Bad { tag: Some("t1"), message: "Command line too long" }"#);
        assert!(e[1].contains("Noop"));
    }

    #[test]
    fn huge_nonsync_literal_is_fatal_and_huge_sync_literal_is_bad() {
        let e = events(b"a LOGIN {107374182400+}\r\n");
        assert_eq!(e, vec![r#"Fatal("Literal too large")"#]);
        let e = events(b"a LOGIN {107374182400}\r\nb NOOP\r\n");
        assert_eq!(e[0], r#"Bad { tag: Some("a"), message: "Literal too large" }"#);
        assert!(e[1].contains("Noop"));
    }

    #[test]
    fn rejected_nonsync_literal_is_skipped() {
        let e = events(b"a LOGIN {60+}\r\n012345678901234567890123456789012345678901234567890123456789 x\r\nb NOOP\r\n");
        assert_eq!(e[0], r#"Bad { tag: Some("a"), message: "Literal too large" }"#);
        assert!(e[1].contains("Noop"), "{e:?}");
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"a NOOP\r\nb LOGIN {3}\r\nabc \"x\"\r\nc APPEND INBOX {4+}\r\nwxyz\r\nd BAD-CMD\r\n";
        let whole = events(input);
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        let mut got = Vec::new();
        let mut appended = Vec::new();
        for &b in input.iter() {
            d.feed(&[b]);
            loop {
                match d.next() {
                    Event::NeedMore => break,
                    Event::AppendStart(h) => {
                        got.push(format!("{:?}", Event::AppendStart(h)));
                        d.accept_append();
                    }
                    Event::AppendData(x) => appended.extend_from_slice(x),
                    ev => got.push(format!("{ev:?}")),
                }
            }
        }
        assert_eq!(appended, b"wxyz");
        let whole: Vec<_> = whole.into_iter().filter(|s| !s.starts_with("AppendData")).collect();
        assert_eq!(got, whole);
    }

    #[test]
    fn idle_done_and_auth_lines() {
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        d.feed(b"a IDLE\r\nDONE\r\n");
        assert!(matches!(d.next(), Event::Command(Command { body: CommandBody::Idle, .. })));
        d.expect_idle_done();
        assert_eq!(d.next(), Event::IdleDone(true));
        d.feed(b"AGpvZQBwdw==\r\n");
        d.expect_auth_line();
        assert_eq!(d.next(), Event::AuthLine(b"AGpvZQBwdw=="));
        assert!(d.is_empty());
    }
}
