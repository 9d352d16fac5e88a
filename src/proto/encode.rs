//! Writing responses: atoms, quoted strings, literals, NIL, lists and
//! mailbox names, into a reused output buffer.
//!
//! Large message bytes are not copied: [`Out::splice`] records a shared
//! slice (e.g. of a memory-mapped segment) to be sent between the buffer's
//! bytes, and the network layer writes both with one vectored write.

use std::rc::Rc;

/// Bytes owned elsewhere (a mapped segment) and shared with the output.
#[derive(Clone)]
pub struct Shared {
    owner: Rc<dyn AsRef<[u8]>>,
    start: usize,
    len: usize,
}

impl Shared {
    pub fn new(owner: Rc<dyn AsRef<[u8]>>, start: usize, len: usize) -> Self {
        assert!(start + len <= (*owner).as_ref().len(), "shared slice out of bounds");
        Shared { owner, start, len }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        Shared { owner: Rc::new(v), start: 0, len }
    }

    pub fn bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }

    /// A sub-slice sharing the same owner.
    pub fn slice(&self, start: usize, len: usize) -> Shared {
        assert!(start + len <= self.len, "sub-slice out of bounds");
        Shared { owner: self.owner.clone(), start: self.start + start, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({} bytes)", self.len)
    }
}

/// How a command ended: its tagged status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// A command whose tagged response is in the output (what the network
/// layer counts in its metrics when it sends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The command's name (`UID FETCH`); None for a line that was no command.
    pub command: Option<&'static str>,
    pub status: Status,
}

/// Response bytes for one connection: text in `buf`, with shared slices
/// inserted at recorded positions.
#[derive(Default, Debug)]
pub struct Out {
    pub buf: Vec<u8>,
    /// (position in `buf`, slice to send at that position), in order.
    pub splices: Vec<(usize, Shared)>,
    /// The command whose responses are being written (see [`Out::begin`]).
    command: Option<&'static str>,
    /// Commands completed by the output, in order; the sender drains them.
    pub completions: Vec<Completion>,
}

impl Out {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.splices.is_empty()
    }

    /// The responses that follow belong to `command` (None: a line that was
    /// no command); its tagged response records a [`Completion`].
    pub fn begin(&mut self, command: Option<&'static str>) {
        self.command = command;
    }

    /// Forgets the bytes and the completions (sent, or thrown away).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.splices.clear();
        self.completions.clear();
    }

    /// Total bytes to send.
    pub fn len(&self) -> usize {
        self.buf.len() + self.splices.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// The bytes to send, in order: runs of the buffer and shared slices.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        let spliced = self.splices.iter().flat_map(move |(pos, s)| {
            let run = &self.buf[at..*pos];
            at = *pos;
            [run, s.bytes()]
        });
        let last = self.splices.last().map_or(0, |(pos, _)| *pos);
        spliced.chain(std::iter::once(&self.buf[last..])).filter(|p| !p.is_empty())
    }

    /// Everything as one contiguous vector (tests).
    pub fn flatten(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for p in self.parts() {
            v.extend_from_slice(p);
        }
        v
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    pub fn sp(&mut self) -> &mut Self {
        self.buf.push(b' ');
        self
    }

    pub fn crlf(&mut self) -> &mut Self {
        self.raw(b"\r\n")
    }

    pub fn num(&mut self, n: u64) -> &mut Self {
        let mut b = itoa::Buffer::new();
        self.raw(b.format(n).as_bytes())
    }

    pub fn nil(&mut self) -> &mut Self {
        self.raw(b"NIL")
    }

    /// A string as quoted when it can be, as a literal otherwise.
    /// `utf8` allows 8-bit UTF-8 in quoted strings (IMAP4rev2 / UTF8=ACCEPT).
    pub fn string(&mut self, s: &[u8], utf8: bool) -> &mut Self {
        let quotable = s.len() <= 1024 && s.iter().all(|&b| !matches!(b, 0 | b'\r' | b'\n') && (b < 0x80 || utf8)) && (!utf8 || std::str::from_utf8(s).is_ok());
        if quotable {
            self.buf.reserve(s.len() + 2);
            self.buf.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    self.buf.push(b'\\');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
            self
        } else {
            self.literal(s)
        }
    }

    pub fn nstring(&mut self, s: Option<&[u8]>, utf8: bool) -> &mut Self {
        match s {
            Some(s) => self.string(s, utf8),
            None => self.nil(),
        }
    }

    /// `{n}` CRLF and the bytes, copied.
    pub fn literal(&mut self, s: &[u8]) -> &mut Self {
        self.raw(b"{").num(s.len() as u64).raw(b"}\r\n").raw(s)
    }

    /// `{n}` CRLF and the bytes, shared rather than copied.
    pub fn literal_shared(&mut self, s: Shared, binary: bool) -> &mut Self {
        if binary {
            self.raw(b"~");
        }
        self.raw(b"{").num(s.len() as u64).raw(b"}\r\n");
        self.splice(s)
    }

    /// Sends `s` at the current position without copying it.
    pub fn splice(&mut self, s: Shared) -> &mut Self {
        if s.len() <= 256 {
            // Small slices are cheaper copied than written as an extra iovec.
            self.buf.extend_from_slice(s.bytes());
        } else {
            self.splices.push((self.buf.len(), s));
        }
        self
    }

    /// An atom-or-string for a mailbox name (already in the wire encoding).
    pub fn astring(&mut self, s: &[u8], utf8: bool) -> &mut Self {
        let atom = !s.is_empty() && !s.eq_ignore_ascii_case(b"NIL") && s.iter().all(|&b| b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b));
        if atom {
            self.raw(s)
        } else {
            self.string(s, utf8)
        }
    }

    /// A mailbox name: modified UTF-7 unless the client takes UTF-8.
    pub fn mailbox(&mut self, name: &str, utf8: bool) -> &mut Self {
        if utf8 || name.is_ascii() && !name.contains('&') {
            self.astring(name.as_bytes(), utf8)
        } else {
            let e = super::utf7::encode(name);
            self.astring(e.as_bytes(), false)
        }
    }

    /// `tag OK|NO|BAD [code] text` CRLF.
    pub fn tagged(&mut self, tag: &str, status: &str, code: Option<&str>, text: &str) -> &mut Self {
        let status_of = match status {
            "OK" => Some(Status::Ok),
            "NO" => Some(Status::No),
            "BAD" => Some(Status::Bad),
            _ => None,
        };
        if let Some(status) = status_of.filter(|_| tag != "*") {
            self.completions.push(Completion { command: self.command, status });
        }
        self.str(tag).sp().str(status).sp();
        if let Some(c) = code {
            self.raw(b"[").str(c).raw(b"] ");
        }
        self.str(text).crlf()
    }

    /// `* OK|NO|BAD|BYE [code] text` CRLF.
    pub fn untagged_status(&mut self, status: &str, code: Option<&str>, text: &str) -> &mut Self {
        self.tagged("*", status, code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut o = Out::new();
        o.string(b"a \"q\" \\", false).sp().string(b"line\r\n", false).sp().nstring(None, false).sp().astring(b"INBOX", false).sp().astring(b"a b", false);
        assert_eq!(o.flatten(), b"\"a \\\"q\\\" \\\\\" {6}\r\nline\r\n NIL INBOX \"a b\"");
        let mut o = Out::new();
        o.string("\u{e9}".as_bytes(), false).sp().string("\u{e9}".as_bytes(), true);
        assert_eq!(o.flatten(), "{2}\r\n\u{e9} \"\u{e9}\"".as_bytes());
        let mut o = Out::new();
        o.mailbox("Entw\u{fc}rfe", false).sp().mailbox("Entw\u{fc}rfe", true);
        assert_eq!(o.flatten(), "Entw&APw-rfe \"Entw\u{fc}rfe\"".as_bytes());
    }

    #[test]
    fn splices_keep_order() {
        let mut o = Out::new();
        let big = Shared::from_vec(vec![b'x'; 1000]);
        o.raw(b"* 1 FETCH (BODY[] ").literal_shared(big, false).raw(b")\r\n");
        let flat = o.flatten();
        assert_eq!(o.splices.len(), 1);
        assert!(flat.starts_with(b"* 1 FETCH (BODY[] {1000}\r\nxxx"));
        assert!(flat.ends_with(b"xxx)\r\n"));
        assert_eq!(flat.len(), o.len());
    }
}
