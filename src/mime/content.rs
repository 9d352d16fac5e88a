//! MIME header field values (RFC 2045, RFC 2231): Content-Type and
//! Content-Disposition with their parameters, Content-Transfer-Encoding,
//! and the kinds of part they make. Used by the part scanner and by the
//! BODYSTRUCTURE renderer alike.

use super::address::comment_end;

/// How a part's body is encoded for transport (for BINARY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// 7bit, 8bit, binary or absent: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
    /// An encoding we cannot undo (BINARY answers NO [UNKNOWN-CTE]).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Leaf,
    Multipart,
    /// message/rfc822 (or message/global) with a parsed inner message.
    Message,
}

/// One addressable part (RFC 9051 6.4.5 part numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub path: Vec<u32>,
    /// Start of the part's MIME header.
    pub header: u32,
    /// Start of the part's body.
    pub body: u32,
    pub end: u32,
    pub kind: Kind,
    pub transfer: Transfer,
    /// For `Kind::Message`: where the inner message's body starts.
    pub inner_body: u32,
    /// The part is text (`text/*`): what BODY and TEXT searches look in.
    pub text: bool,
}

/// MIME parameters: (name, value), in order.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// A parsed Content-Type or Content-Disposition value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeValue {
    pub value: Vec<u8>,
    pub params: Params,
}

fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    loop {
        while i < v.len() && matches!(v[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if v.get(i) == Some(&b'(') {
            i = comment_end(v, i).1;
        } else {
            return i;
        }
    }
}

fn token(v: &[u8], i: usize) -> (Vec<u8>, usize) {
    let mut j = i;
    while j < v.len()
        && !matches!(
            v[j],
            b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'<' | b'>' | b'@' | b',' | b';' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'='
        )
    {
        j += 1;
    }
    (v[i..j].to_vec(), j)
}

fn quoted(v: &[u8], mut i: usize) -> Option<(Vec<u8>, usize)> {
    let mut s = Vec::new();
    i += 1;
    while i < v.len() {
        match v[i] {
            b'"' => return Some((s, i + 1)),
            b'\\' if i + 1 < v.len() => {
                s.push(v[i + 1]);
                i += 2;
            }
            b'\r' | b'\n' => i += 1,
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    None
}

/// Parses `value *(; name=value)`. `with_subtype` reads `type/subtype`.
/// On a malformed parameter list the parameters are dropped (Dovecot does the same).
pub fn parse_type_value(v: &[u8], with_subtype: bool) -> Option<(TypeValue, Option<Vec<u8>>)> {
    let i = skip_cfws(v, 0);
    let (t, mut i) = token(v, i);
    if t.is_empty() {
        return None;
    }
    let mut sub = None;
    if with_subtype {
        i = skip_cfws(v, i);
        if v.get(i) != Some(&b'/') {
            return None;
        }
        i = skip_cfws(v, i + 1);
        let (s, j) = token(v, i);
        if s.is_empty() {
            return None;
        }
        sub = Some(s);
        i = j;
    }
    let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let ok = loop {
        i = skip_cfws(v, i);
        if i >= v.len() {
            break true;
        }
        if v[i] != b';' {
            break false;
        }
        i = skip_cfws(v, i + 1);
        if i >= v.len() {
            break true;
        }
        let (name, j) = token(v, i);
        if name.is_empty() {
            break false;
        }
        i = skip_cfws(v, j);
        if v.get(i) != Some(&b'=') {
            break false;
        }
        i = skip_cfws(v, i + 1);
        let (val, j) = if v.get(i) == Some(&b'"') {
            match quoted(v, i) {
                Some(x) => x,
                None => break false,
            }
        } else {
            let mut j = i;
            while j < v.len() && !matches!(v[j], b';' | b' ' | b'\t' | b'\r' | b'\n' | b'(' | b'"') {
                j += 1;
            }
            (v[i..j].to_vec(), j)
        };
        raw.push((name, val));
        i = j;
    };
    let params = if ok { merge_continuations(raw) } else { Vec::new() };
    Some((TypeValue { value: t, params }, sub))
}

/// Joins RFC 2231 continuations (`name*0*`, `name*1`, ...) into one
/// parameter, `name*` if any segment is extended, without decoding them.
fn merge_continuations(raw: Params) -> Params {
    let mut out: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
    for (name, value) in raw {
        let s = String::from_utf8_lossy(&name).into_owned();
        let parts: Vec<&str> = s.split('*').collect();
        let seg = if parts.len() >= 2 { parts[1].parse::<u32>().ok() } else { None };
        match seg {
            Some(n) => {
                let base = parts[0].as_bytes().to_vec();
                let extended = parts.len() == 3 && parts[2].is_empty();
                if let Some(e) = out.iter_mut().find(|(b, _, _)| b.eq_ignore_ascii_case(&base)).filter(|_| n > 0) {
                    e.1.extend_from_slice(&value);
                    e.2 |= extended;
                } else {
                    out.push((base, value, extended));
                }
            }
            None => out.push((name, value, false)),
        }
    }
    out.into_iter()
        .map(|(mut n, v, ext)| {
            if ext && !n.ends_with(b"*") {
                n.push(b'*');
            }
            (n, v)
        })
        .collect()
}

pub fn transfer_of(enc: Option<&[u8]>) -> Transfer {
    match enc.map(|e| e.to_ascii_lowercase()) {
        None => Transfer::Identity,
        Some(e) => match e.as_slice() {
            b"7bit" | b"8bit" | b"binary" | b"" => Transfer::Identity,
            b"base64" => Transfer::Base64,
            b"quoted-printable" => Transfer::QuotedPrintable,
            _ => Transfer::Unknown,
        },
    }
}

/// Whether quoted-printable decoding would give `data` back unchanged: no
/// `=`, no space or tab ending a line (decoding drops those, RFC 2045
/// 6.7 (3)), and line ends all CRLF or all LF. Most parts labelled
/// quoted-printable are plain ASCII prose: SEARCH reads them in place
/// instead of decoding a copy byte by byte (half the time of SEARCH TEXT).
pub fn quoted_printable_is_identity(data: &[u8]) -> bool {
    if memchr::memchr(b'=', data).is_some() {
        return false;
    }
    let crs = memchr::memchr_iter(b'\r', data).count();
    let mut lfs = 0;
    for i in memchr::memchr_iter(b'\n', data) {
        lfs += 1;
        let end = if crs > 0 {
            if i == 0 || data[i - 1] != b'\r' {
                return false;
            }
            i - 1
        } else {
            i
        };
        if end > 0 && matches!(data[end - 1], b' ' | b'\t' | 0x0c) {
            return false;
        }
    }
    crs == 0 || crs == lfs
}

/// Undoes a content-transfer-encoding (BINARY, RFC 3516). None when the
/// encoding is unknown or the data is not valid in it.
pub fn decode_transfer(t: Transfer, data: &[u8]) -> Option<Vec<u8>> {
    match t {
        Transfer::Identity => Some(data.to_vec()),
        Transfer::Base64 => {
            let clean: Vec<u8> = data.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            mail_parser::decoders::base64::base64_decode(&clean)
        }
        Transfer::QuotedPrintable => mail_parser::decoders::quoted_printable::quoted_printable_decode(data),
        Transfer::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Where the check says decoding changes nothing, the decoder
        /// (mail-parser's) agrees, whatever the bytes.
        #[test]
        fn quoted_printable_identity_agrees_with_the_decoder(data in proptest::collection::vec(proptest::sample::select(b"ab =\t\r\n\x0c3D".to_vec()), 0..64)) {
            if quoted_printable_is_identity(&data) {
                proptest::prop_assert_eq!(mail_parser::decoders::quoted_printable::quoted_printable_decode(&data), Some(data.clone()));
            }
        }
    }

    #[test]
    fn prose_is_read_in_place_and_encoded_text_is_not() {
        assert!(quoted_printable_is_identity(b"Dear team,\r\nthe report is attached.\r\n"));
        assert!(quoted_printable_is_identity(b"lf only\nlines\n"));
        assert!(!quoted_printable_is_identity(b"caf=C3=A9\r\n"));
        assert!(!quoted_printable_is_identity(b"soft =\r\nbreak"));
        assert!(!quoted_printable_is_identity(b"trailing space \r\nnext"));
        assert!(!quoted_printable_is_identity(b"mixed\r\nends\n"));
        assert!(!quoted_printable_is_identity(b"bare\rcr\r\n"));
    }
}
