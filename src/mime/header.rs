//! Raw header blocks: finding the end of a header, iterating fields with
//! their exact bytes (for BODY[HEADER.FIELDS]), and unfolding values. Works
//! on CRLF and bare-LF input alike and never changes a byte it returns;
//! `decode` gives a value's text with its encoded words decoded.

/// Where the body starts: just after the first empty line, or the end of
/// the input when there is none.
pub fn header_len(msg: &[u8]) -> usize {
    if msg.starts_with(b"\r\n") {
        return 2;
    }
    if msg.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &msg[i..]) {
        let lf = i + p;
        match msg.get(lf + 1) {
            Some(b'\n') => return lf + 2,
            Some(b'\r') if msg.get(lf + 2) == Some(&b'\n') => return lf + 3,
            None => return msg.len(),
            _ => i = lf + 1,
        }
    }
    msg.len()
}

/// One header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    /// The value after the colon, folding included, line end excluded.
    pub value: &'a [u8],
    /// The whole field with its final line end, exactly as in the message.
    pub raw: &'a [u8],
}

/// The fields of a header block (as returned by [`header_len`]).
pub fn fields(block: &[u8]) -> Fields<'_> {
    Fields { b: block, at: 0 }
}

pub struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;
    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            if self.at >= self.b.len() {
                return None;
            }
            let start = self.at;
            // A field ends at a line end not followed by a space or tab.
            let mut end = start;
            loop {
                match memchr::memchr(b'\n', &self.b[end..]) {
                    Some(p) => {
                        end += p + 1;
                        if !matches!(self.b.get(end), Some(b' ' | b'\t')) {
                            break;
                        }
                    }
                    None => {
                        end = self.b.len();
                        break;
                    }
                }
            }
            self.at = end;
            let raw = &self.b[start..end];
            let line = trim_eol(raw);
            if line.is_empty() {
                // The blank line ending the header.
                return None;
            }
            let Some(colon) = memchr::memchr(b':', line) else { continue };
            let name = trim_ws_end(&line[..colon]);
            if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 0x7f) {
                continue;
            }
            return Some(Field { name, value: &line[colon + 1..], raw });
        }
    }
}

fn trim_eol(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn trim_ws_end(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |p| p + 1);
    &b[..end]
}

/// Unfolds a value as Dovecot does for ENVELOPE: white space right after
/// the colon is skipped, line ends of folds are removed (the white space
/// that follows them is kept), trailing white space is trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let lead = value.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(value.len());
    let mut v: Vec<u8> = value[lead..].iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let end = v.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |p| p + 1);
    v.truncate(end);
    v
}

/// The first field called `name` (case-insensitive), unfolded.
pub fn first(block: &[u8], name: &str) -> Option<Vec<u8>> {
    fields(block).find(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| unfold(f.value))
}

/// The fields named (or, with `not`, not named) in `names`, in message
/// order, followed by the blank line: BODY[HEADER.FIELDS (...)].
pub fn select(block: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields(block) {
        let listed = names.iter().any(|n| f.name.eq_ignore_ascii_case(n.as_bytes()));
        if listed != not {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Decodes RFC 2047 encoded words in a header value (for SEARCH).
pub fn decode(name: &str, value: &[u8]) -> String {
    if !value.windows(2).any(|w| w == b"=?") && std::str::from_utf8(value).is_ok() {
        return String::from_utf8_lossy(value).into_owned();
    }
    // mail-parser decodes encoded words in unstructured fields it knows, so
    // the value is carried in a Comments field whatever its real name.
    let _ = name;
    let mut msg = Vec::with_capacity(value.len() + 32);
    msg.extend_from_slice(b"Comments: ");
    msg.extend_from_slice(value);
    msg.extend_from_slice(b"\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(&msg)
        .and_then(|m| m.header("Comments").and_then(|h| h.as_text().map(str::to_string)))
        .unwrap_or_else(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_fields() {
        let m = b"A: 1\r\nB: two\r\n  folded\r\nbogus line\r\nC:3\r\n\r\nbody";
        assert_eq!(header_len(m), m.len() - 4);
        let f: Vec<_> = fields(&m[..header_len(m)]).collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].raw, b"B: two\r\n  folded\r\n");
        assert_eq!(unfold(f[1].value), b"two  folded");
        assert_eq!(header_len(b"A: 1\nB: 2\n\nbody"), 11);
        assert_eq!(header_len(b"\r\nbody"), 2);
        assert_eq!(header_len(b"A: 1\r\nno end"), 12, "no blank line: all header");
        assert_eq!(select(m, &["c".into(), "a".into()], false), b"A: 1\r\nC:3\r\n\r\n");
        assert_eq!(select(m, &["c".into(), "a".into()], true), b"B: two\r\n  folded\r\n\r\n");
    }
}
