//! The MIME structure of a message as IMAP shows it: BODY and BODYSTRUCTURE
//! (RFC 9051 7.5.2) and the byte ranges of every part for BODY[n...].
//!
//! mail-parser finds the parts (boundaries, nesting, offsets). Header values
//! are taken raw from the message, because IMAP wants them raw: encoded
//! words are not decoded, and RFC 2231 parameters are passed through with
//! their continuations merged, as Dovecot does.

use mail_parser::{Message, MessagePart, PartType};

use super::address::{self, Addr};
use super::header;
use crate::proto::Out;

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

/// A parsed Content-Type or Content-Disposition value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeValue {
    pub value: Vec<u8>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    loop {
        while i < v.len() && matches!(v[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if v.get(i) == Some(&b'(') {
            let mut depth = 0;
            while i < v.len() {
                match v[i] {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b'\\' => i += 1,
                    _ => {}
                }
                i += 1;
            }
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
fn merge_continuations(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
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

/// The part's headers (raw) from its offsets.
fn part_header<'a>(raw: &'a [u8], p: &MessagePart) -> &'a [u8] {
    let (h, b) = (p.offset_header as usize, p.offset_body as usize);
    raw.get(h..b.max(h)).unwrap_or(&[])
}

fn transfer_of(enc: Option<&[u8]>) -> Transfer {
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

fn count_lf(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Everything computed from one walk over the message.
pub struct Analysis {
    pub envelope: Vec<u8>,
    pub body: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub parts: Vec<Part>,
    pub header_len: u32,
}

struct Walker<'a> {
    raw: &'a [u8],
    parts: Vec<Part>,
}

fn nstring(o: &mut Out, s: Option<&[u8]>) {
    o.nstring(s, false);
}

fn render_params(o: &mut Out, params: &[(Vec<u8>, Vec<u8>)]) {
    if params.is_empty() {
        o.nil();
        return;
    }
    o.raw(b"(");
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            o.sp();
        }
        o.string(n, false).sp().string(v, false);
    }
    o.raw(b")");
}

fn render_addrs(o: &mut Out, list: &[Addr]) {
    if list.is_empty() {
        o.nil();
        return;
    }
    o.raw(b"(");
    for a in list {
        o.raw(b"(");
        nstring(o, a.name.as_deref());
        o.sp();
        nstring(o, a.adl.as_deref());
        o.sp();
        nstring(o, a.mailbox.as_deref());
        o.sp();
        nstring(o, a.host.as_deref());
        o.raw(b")");
    }
    o.raw(b")");
}

/// ENVELOPE of the message whose header block is `h` (RFC 9051 7.5.2).
pub fn envelope(h: &[u8], o: &mut Out) {
    let field = |n: &str| header::first(h, n);
    let addrs = |n: &str| field(n).map(|v| address::parse_list(&v)).unwrap_or_default();
    let from = addrs("From");
    let mut sender = addrs("Sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addrs("Reply-To");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    o.raw(b"(");
    nstring(o, field("Date").as_deref());
    o.sp();
    nstring(o, field("Subject").as_deref());
    for list in [&from, &sender, &reply_to, &addrs("To"), &addrs("Cc"), &addrs("Bcc")] {
        o.sp();
        render_addrs(o, list);
    }
    o.sp();
    nstring(o, field("In-Reply-To").as_deref());
    o.sp();
    nstring(o, field("Message-ID").as_deref());
    o.raw(b")");
}

impl<'a> Walker<'a> {
    /// Renders one part into BODY (`b`) and BODYSTRUCTURE (`s`) and records
    /// it (and its children) in the part table.
    fn part(&mut self, msg: &Message, idx: usize, path: Vec<u32>, digest_parent: bool, b: &mut Out, s: &mut Out) {
        let Some(p) = msg.parts.get(idx) else { return };
        let h = part_header(self.raw, p);
        let ct = header::first(h, "Content-Type").and_then(|v| parse_type_value(&v, true));
        let (default_type, default_sub): (&[u8], &[u8]) = if digest_parent { (b"message", b"rfc822") } else { (b"text", b"plain") };
        let (ty, sub, mut params) = match ct {
            Some((tv, Some(sub))) => (tv.value, sub, tv.params),
            _ => (default_type.to_vec(), default_sub.to_vec(), Vec::new()),
        };
        let body = self.raw.get(p.offset_body as usize..(p.offset_end as usize).max(p.offset_body as usize)).unwrap_or(&[]);
        let enc = header::first(h, "Content-Transfer-Encoding");
        let transfer = transfer_of(enc.as_deref());
        // An encoded message/rfc822 is opaque (mail-parser, given the real
        // encoding, would not open it; see `without_decoding`).
        let encoded = matches!(transfer, Transfer::Base64 | Transfer::QuotedPrintable);
        let kind = match &p.body {
            PartType::Multipart(_) => Kind::Multipart,
            PartType::Message(_) if !encoded => Kind::Message,
            _ => Kind::Leaf,
        };
        let inner_body = match &p.body {
            PartType::Message(m) if !encoded => m.parts.first().map_or(p.offset_body, |r| r.offset_body),
            _ => p.offset_body,
        };
        let text = ty.eq_ignore_ascii_case(b"text");
        if !path.is_empty() {
            self.parts.push(Part {
                path: path.clone(),
                header: p.offset_header,
                body: p.offset_body,
                end: p.offset_end.max(p.offset_body),
                kind,
                transfer,
                inner_body,
                text,
            });
        }
        let ext = |s: &mut Out, params_first: Option<&[(Vec<u8>, Vec<u8>)]>, md5: bool| {
            if let Some(ps) = params_first {
                render_params(s, ps);
            } else if md5 {
                nstring(s, header::first(h, "Content-MD5").as_deref());
            }
            s.sp();
            match header::first(h, "Content-Disposition").and_then(|v| parse_type_value(&v, false)) {
                Some((d, _)) => {
                    s.raw(b"(").string(&d.value, false).sp();
                    render_params(s, &d.params);
                    s.raw(b")");
                }
                None => {
                    s.nil();
                }
            }
            s.sp();
            match header::first(h, "Content-Language") {
                Some(l) => {
                    let langs: Vec<Vec<u8>> = l.split(|&c| c == b',').map(header::unfold).filter(|x| !x.is_empty()).collect();
                    if langs.len() == 1 {
                        s.string(&langs[0], false);
                    } else if langs.is_empty() {
                        s.nil();
                    } else {
                        s.raw(b"(");
                        for (i, x) in langs.iter().enumerate() {
                            if i > 0 {
                                s.sp();
                            }
                            s.string(x, false);
                        }
                        s.raw(b")");
                    }
                }
                None => {
                    s.nil();
                }
            }
            s.sp();
            nstring(s, header::first(h, "Content-Location").as_deref());
        };
        if let PartType::Multipart(children) = &p.body {
            let digest = sub.eq_ignore_ascii_case(b"digest");
            b.raw(b"(");
            s.raw(b"(");
            for (i, &c) in children.iter().enumerate() {
                let mut cp = path.clone();
                cp.push(i as u32 + 1);
                self.part(msg, c as usize, cp, digest, b, s);
            }
            if children.is_empty() {
                // RFC 9051 requires at least one body part; Dovecot shows an empty text part.
                let empty = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
                b.raw(empty);
                s.raw(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)");
            }
            b.sp().string(&sub, false).raw(b")");
            s.sp().string(&sub, false).sp();
            ext(s, Some(&params), false);
            s.raw(b")");
            return;
        }
        let is_text = ty.eq_ignore_ascii_case(b"text");
        let (mut ty, mut sub) = (ty, sub);
        let only_default_charset =
            params.is_empty() || (params.len() == 1 && params[0].0.eq_ignore_ascii_case(b"charset") && params[0].1.eq_ignore_ascii_case(b"us-ascii"));
        if is_text && sub.eq_ignore_ascii_case(b"plain") && only_default_charset {
            // The default type, however it was spelled, is shown in its
            // canonical lower-case form (as Dovecot does).
            (ty, sub) = (b"text".to_vec(), b"plain".to_vec());
            params = vec![(b"charset".to_vec(), b"us-ascii".to_vec())];
        }
        if is_text && !params.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"charset")) {
            params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
        }
        for o in [&mut *b, &mut *s] {
            o.raw(b"(").string(&ty, false).sp().string(&sub, false).sp();
            render_params(o, &params);
            o.sp();
            nstring(o, header::first(h, "Content-ID").as_deref());
            o.sp();
            nstring(o, header::first(h, "Content-Description").as_deref());
            o.sp().string(enc.as_deref().unwrap_or(b"7bit"), false).sp().num(body.len() as u64);
        }
        if let PartType::Message(inner) = &p.body {
            let ih = inner.parts.first().map(|r| part_header(self.raw, r)).unwrap_or(&[]);
            for o in [&mut *b, &mut *s] {
                o.sp();
                envelope(ih, o);
                o.sp();
            }
            // The inner message's body: its parts are numbered below this one.
            let root_multipart = matches!(inner.parts.first().map(|r| &r.body), Some(PartType::Multipart(_)));
            if root_multipart {
                self.part_of_root(inner, path.clone(), b, s);
            } else {
                let mut cp = path.clone();
                cp.push(1);
                self.part(inner, 0, cp, false, b, s);
            }
            for o in [&mut *b, &mut *s] {
                o.sp().num(count_lf(body));
            }
        } else if is_text {
            for o in [&mut *b, &mut *s] {
                o.sp().num(count_lf(body));
            }
        }
        b.raw(b")");
        s.sp();
        ext(s, None, true);
        s.raw(b")");
    }

    /// A multipart root whose children get numbers under `path`.
    fn part_of_root(&mut self, msg: &Message, path: Vec<u32>, b: &mut Out, s: &mut Out) {
        // Render the root multipart itself, but its own entry in the part
        // table is the enclosing message part, so pass an empty path guard.
        let saved = self.parts.len();
        self.part(msg, 0, path.clone(), false, b, s);
        // Remove the duplicate entry for the root (same path as the message part).
        if self.parts.len() > saved && self.parts[saved].path == path {
            self.parts.remove(saved);
        }
    }
}

/// A copy of `raw` for mail-parser with every base64 and quoted-printable
/// Content-Transfer-Encoding renamed (first letter to `x`) to an encoding
/// it passes through: mail-parser decodes bodies while it parses, which
/// cost more than all the rest of the analysis, and we need only its part
/// tree (offsets), not decoded bodies. Same length, so the same offsets;
/// our own code reads the encodings from the original bytes. None when
/// there is nothing to rename.
fn without_decoding(raw: &[u8]) -> Option<Vec<u8>> {
    const NAME: &[u8] = b"content-transfer-encoding:";
    let mut copy: Option<Vec<u8>> = None;
    for needle in [&b"ncoding:"[..], b"NCODING:"] {
        for hit in memchr::memmem::find_iter(raw, needle) {
            let Some(start) = (hit + needle.len()).checked_sub(NAME.len()) else { continue };
            let at_line_start = start == 0 || raw[start - 1] == b'\n';
            if !at_line_start || !raw[start..hit + needle.len()].eq_ignore_ascii_case(NAME) {
                continue;
            }
            let mut v = hit + needle.len();
            while v < raw.len() && matches!(raw[v], b' ' | b'\t' | b'\r' | b'\n') {
                v += 1;
            }
            let rest = &raw[v..];
            let token = rest.iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'-')).unwrap_or(rest.len());
            let value = &rest[..token];
            if value.eq_ignore_ascii_case(b"base64") || value.eq_ignore_ascii_case(b"quoted-printable") {
                copy.get_or_insert_with(|| raw.to_vec())[v] = b'x';
            }
        }
    }
    copy
}

/// Computes everything IMAP needs about a message's structure.
pub fn analyze(raw: &[u8]) -> Analysis {
    let header_len = header::header_len(raw) as u32;
    let mut env = Out::new();
    envelope(&raw[..header_len as usize], &mut env);
    let mut b = Out::new();
    let mut s = Out::new();
    let mut w = Walker { raw, parts: Vec::new() };
    let renamed = without_decoding(raw);
    match mail_parser::MessageParser::default().parse(renamed.as_deref().unwrap_or(raw)) {
        Some(msg) if !msg.parts.is_empty() => {
            let root_multipart = matches!(msg.parts[0].body, PartType::Multipart(_));
            if root_multipart {
                w.part(&msg, 0, Vec::new(), false, &mut b, &mut s);
            } else {
                w.part(&msg, 0, vec![1], false, &mut b, &mut s);
                // Part 1 of a single-part message is its body; its MIME header is the message header.
            }
        }
        _ => {
            // Not even a header could be parsed: one text part.
            let body = &raw[header_len as usize..];
            let leaf = format!("(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {}", body.len(), count_lf(body));
            b.str(&leaf).raw(b")");
            s.str(&leaf).raw(b" NIL NIL NIL NIL)");
            w.parts.push(Part {
                path: vec![1],
                header: 0,
                body: header_len,
                end: raw.len() as u32,
                kind: Kind::Leaf,
                transfer: Transfer::Identity,
                inner_body: header_len,
                text: true,
            });
        }
    }
    Analysis { envelope: env.flatten(), body: b.flatten(), bodystructure: s.flatten(), parts: w.parts, header_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_encodings_are_renamed_in_place() {
        let m = b"Content-Transfer-Encoding: base64\r\nX: y\r\n\r\n--b\r\ncontent-transfer-encoding:\r\n Quoted-Printable\r\nCONTENT-TRANSFER-ENCODING: 7bit\r\nbody content-transfer-encoding: base64\r\n";
        let c = without_decoding(m).unwrap();
        assert_eq!(c.len(), m.len());
        let text = String::from_utf8(c).unwrap();
        assert!(text.starts_with("Content-Transfer-Encoding: xase64\r\n"), "{text}");
        assert!(text.contains(" xuoted-Printable\r\n") && text.contains(": 7bit") && text.ends_with("body content-transfer-encoding: base64\r\n"), "{text}");
        assert!(without_decoding(b"Subject: x\r\n\r\nbody").is_none());
    }

    #[test]
    fn content_type_params() {
        let (t, sub) = parse_type_value(b" TEXT/Plain; charset=UTF-8; format=flowed", true).unwrap();
        assert_eq!((t.value.as_slice(), sub.unwrap().as_slice()), (&b"TEXT"[..], &b"Plain"[..]));
        assert_eq!(t.params, vec![(b"charset".to_vec(), b"UTF-8".to_vec()), (b"format".to_vec(), b"flowed".to_vec())]);
        let (t, _) = parse_type_value(b"attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\" rates.txt\"", false).unwrap();
        assert_eq!(t.params, vec![(b"filename*".to_vec(), b"utf-8''%E2%82%AC rates.txt".to_vec())]);
        let (t, _) = parse_type_value(b"text/plain; charset", true).unwrap();
        assert!(t.params.is_empty());
        let (t, _) = parse_type_value(b"multipart/mixed; boundary=\"a;b\" (comment)", true).unwrap();
        assert_eq!(t.params, vec![(b"boundary".to_vec(), b"a;b".to_vec())]);
    }
}
