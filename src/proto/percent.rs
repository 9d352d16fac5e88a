//! `%XX` escapes (RFC 3986 2.1), as IMAP URLs (RFC 5092) and the store's
//! manifest write names.

/// `s` with its `%XX` escapes decoded; None if one is malformed or the
/// result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    String::from_utf8(decode_bytes(s)?).ok()
}

/// `s` with its `%XX` escapes decoded, as bytes; None if one is malformed.
pub fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `b` with every byte outside visible ASCII, and `%`, written `%XX`: a
/// form that fits in one space-separated word of a line.
pub fn encode_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() && c != b'%' {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}
