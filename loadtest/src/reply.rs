//! Reading server replies without I/O: IMAP logical lines (with literals
//! skipped, however large) and SMTP/LMTP reply lines. The client feeds it
//! whatever arrived and gets complete lines back; it keeps at most the first
//! `HEAD_MAX` bytes of a line, so a 1 MiB `BODY[]` costs no memory.

/// How much of a line is kept: enough for tags, status, CAPABILITY, counts.
pub const HEAD_MAX: usize = 4096;

/// Largest literal believed (a larger announcement is a protocol error).
pub const LITERAL_MAX: u64 = 1 << 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    LiteralTooLarge(u64),
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Line,
    Literal(u64),
}

/// One IMAP logical line at a time.
#[derive(Debug, Default)]
pub struct LineReader {
    state: State,
    head: Vec<u8>,
    /// The last bytes of the current segment (where a literal is announced),
    /// kept even when `head` is full.
    tail: Vec<u8>,
    /// Bytes of the current logical line, literals included.
    len: u64,
    /// Plain lines (POP3, SMTP): no literals.
    plain: bool,
}

/// Enough for `{` + 19 digits + `+}` + CRLF.
const TAIL: usize = 32;

/// A literal announced at the end of a line segment: `{123}` or `{123+}`.
fn literal_at_end(seg: &[u8]) -> Option<u64> {
    let s = seg.strip_suffix(b"}")?;
    let s = s.strip_suffix(b"+").unwrap_or(s);
    let open = memchr::memrchr(b'{', s)?;
    let digits = &s[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl LineReader {
    /// Consumes bytes from `input`; returns how many, and whether a logical
    /// line is now complete (read it with [`head`](Self::head) before the
    /// next call).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), ProtoError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            if rest.is_empty() {
                return Ok((used, false));
            }
            match self.state {
                State::Literal(n) => {
                    let take = (n as usize).min(rest.len()) as u64;
                    used += take as usize;
                    self.len += take;
                    self.state = if take == n { State::Line } else { State::Literal(n - take) };
                }
                State::Line => {
                    let (seg, complete) = match memchr::memchr(b'\n', rest) {
                        Some(i) => (&rest[..=i], true),
                        None => (rest, false),
                    };
                    used += seg.len();
                    self.len += seg.len() as u64;
                    let room = HEAD_MAX.saturating_sub(self.head.len());
                    self.head.extend_from_slice(&seg[..seg.len().min(room)]);
                    self.tail.extend_from_slice(&seg[seg.len().saturating_sub(TAIL)..]);
                    if self.tail.len() > TAIL {
                        self.tail.drain(..self.tail.len() - TAIL);
                    }
                    if !complete {
                        return Ok((used, false));
                    }
                    while matches!(self.head.last(), Some(b'\n' | b'\r')) {
                        self.head.pop();
                    }
                    while matches!(self.tail.last(), Some(b'\n' | b'\r')) {
                        self.tail.pop();
                    }
                    let literal = if self.plain { None } else { literal_at_end(&self.tail) };
                    self.tail.clear();
                    match literal {
                        Some(n) if n > LITERAL_MAX => return Err(ProtoError::LiteralTooLarge(n)),
                        Some(n) => self.state = State::Literal(n),
                        None => return Ok((used, true)),
                    }
                }
            }
        }
    }

    /// The completed line's first bytes (CRLF and literal contents removed).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Size of the completed line on the wire, literals included.
    pub fn wire_len(&self) -> u64 {
        self.len
    }

    /// Reads plain lines from now on (a `{5}` at a line's end is text).
    pub fn plain(&mut self) {
        self.plain = true;
    }

    /// Forgets the completed line; call before feeding the next one.
    pub fn next(&mut self) {
        self.head.clear();
        self.len = 0;
    }
}

/// What an IMAP line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
    Other,
}

pub fn status_of(word: &[u8]) -> Status {
    match word {
        w if w.eq_ignore_ascii_case(b"OK") => Status::Ok,
        w if w.eq_ignore_ascii_case(b"NO") => Status::No,
        w if w.eq_ignore_ascii_case(b"BAD") => Status::Bad,
        w if w.eq_ignore_ascii_case(b"BYE") => Status::Bye,
        w if w.eq_ignore_ascii_case(b"PREAUTH") => Status::PreAuth,
        _ => Status::Other,
    }
}

/// A line split into its first two words and the rest.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    pub first: &'a [u8],
    pub second: &'a [u8],
    pub rest: &'a [u8],
}

pub fn parts(line: &[u8]) -> Parts<'_> {
    let mut it = line.splitn(3, |&b| b == b' ');
    Parts { first: it.next().unwrap_or(b""), second: it.next().unwrap_or(b""), rest: it.next().unwrap_or(b"") }
}

/// `* N EXISTS` gives N.
pub fn exists(line: &[u8]) -> Option<u32> {
    let p = parts(line);
    if p.first != b"*" || !p.rest.eq_ignore_ascii_case(b"EXISTS") {
        return None;
    }
    std::str::from_utf8(p.second).ok()?.parse().ok()
}

/// MESSAGES from `* STATUS name (MESSAGES n ...)`.
pub fn status_messages(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let upper = text.to_ascii_uppercase();
    let list = &upper[upper.rfind('(')?..];
    let at = list.find("MESSAGES ")? + "MESSAGES ".len();
    let digits: String = list[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Capabilities from `* CAPABILITY ...` or a `[CAPABILITY ...]` code.
pub fn capabilities(line: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(line);
    let upper = text.to_ascii_uppercase();
    let list = if let Some(r) = upper.strip_prefix("* CAPABILITY ") {
        r.to_string()
    } else {
        let start = upper.find("[CAPABILITY ")? + "[CAPABILITY ".len();
        let end = upper[start..].find(']')? + start;
        upper[start..end].to_string()
    };
    Some(list.split_whitespace().map(str::to_string).collect())
}

/// One SMTP/LMTP reply line: code, whether more lines follow, and the text.
pub fn smtp_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    let more = line.get(3) == Some(&b'-');
    Some((code, more, line.get(4..).unwrap_or(b"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], chunk: usize) -> Vec<(String, u64)> {
        let mut r = LineReader::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            let mut pos = 0;
            while pos < c.len() {
                let (n, done) = r.feed(&c[pos..]).unwrap();
                pos += n;
                if done {
                    out.push((String::from_utf8_lossy(r.head()).into_owned(), r.wire_len()));
                    r.next();
                }
            }
        }
        out
    }

    #[test]
    fn literals_are_skipped_at_any_split() {
        let input = b"* 1 FETCH (BODY[] {5}\r\na\r\nb\r UID 3)\r\n* 2 EXISTS\r\nt OK done\r\n";
        let want = vec![("* 1 FETCH (BODY[] {5} UID 3)".to_string(), 37), ("* 2 EXISTS".into(), 12), ("t OK done".into(), 11)];
        for chunk in 1..input.len() {
            assert_eq!(lines(input, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn long_lines_keep_only_their_head() {
        let mut input = b"* SEARCH".to_vec();
        for i in 0..5000 {
            input.extend_from_slice(format!(" {i}").as_bytes());
        }
        input.extend_from_slice(b"\r\nx OK\r\n");
        let got = lines(&input, 1000);
        assert_eq!(got[0].0.len(), HEAD_MAX);
        assert_eq!(got[1].0, "x OK");
    }

    #[test]
    fn absurd_literal_is_an_error() {
        let mut r = LineReader::default();
        assert_eq!(r.feed(b"* 1 FETCH (BODY[] {99999999999})\r\n").map(|x| x.1), Ok(true));
        let mut r = LineReader::default();
        assert_eq!(r.feed(b"* 1 FETCH (BODY[] {99999999999}\r\n"), Err(ProtoError::LiteralTooLarge(99_999_999_999)));
    }

    #[test]
    fn helpers() {
        assert_eq!(exists(b"* 17 EXISTS"), Some(17));
        assert_eq!(exists(b"* 17 RECENT"), None);
        assert_eq!(status_messages(b"* STATUS INBOX (MESSAGES 12 UNSEEN 3)"), Some(12));
        assert_eq!(status_messages(b"* STATUS \"MESSAGES 9\" (UIDNEXT 4)"), None);
        assert_eq!(capabilities(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] ready").unwrap(), ["IMAP4REV1", "LITERAL+", "IDLE"]);
        assert_eq!(capabilities(b"* CAPABILITY IMAP4rev2 MOVE").unwrap(), ["IMAP4REV2", "MOVE"]);
        assert_eq!(smtp_line(b"250-PIPELINING"), Some((250, true, &b"PIPELINING"[..])));
        assert_eq!(smtp_line(b"550 5.1.1 no"), Some((550, false, &b"5.1.1 no"[..])));
        assert_eq!(status_of(b"ok"), Status::Ok);
    }
}
