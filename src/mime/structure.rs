//! The MIME structure of a message as IMAP shows it: BODY and BODYSTRUCTURE
//! (RFC 9051 7.5.2) and the byte ranges of every part for BODY[n...].
//!
//! [`super::scan`] finds the parts (boundaries, nesting, offsets) in one
//! pass; this module renders them, walking the tree with an explicit stack
//! (no recursion, whatever the nesting). Header values are taken raw from
//! the message, because IMAP wants them raw: encoded words are not decoded,
//! and RFC 2231 parameters are passed through with their continuations
//! merged, as Dovecot does.

use super::address::{self, Addr};
use super::header;
use super::scan::{self, Node};
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

/// MIME parameters: (name, value), in order.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

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

pub(crate) fn transfer_of(enc: Option<&[u8]>) -> Transfer {
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

/// The parts of a node's type: (type, subtype, parameters), with the
/// defaults RFC 2045 and RFC 2046 give when Content-Type is missing or bad.
fn content_type(h: &[u8], in_digest: bool) -> (Vec<u8>, Vec<u8>, Params) {
    let ct = header::first(h, "Content-Type").and_then(|v| parse_type_value(&v, true));
    let (default_type, default_sub): (&[u8], &[u8]) = if in_digest { (b"message", b"rfc822") } else { (b"text", b"plain") };
    match ct {
        Some((tv, Some(sub))) => (tv.value, sub, tv.params),
        _ => (default_type.to_vec(), default_sub.to_vec(), Vec::new()),
    }
}

/// The extension data of BODYSTRUCTURE after the basic fields: MD5 (or the
/// multipart's parameters), disposition, language, location.
fn extension(s: &mut Out, h: &[u8], params_first: Option<&[(Vec<u8>, Vec<u8>)]>) {
    match params_first {
        Some(ps) => render_params(s, ps),
        None => nstring(s, header::first(h, "Content-MD5").as_deref()),
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
}

/// Renders the tree into BODY (`b`) and BODYSTRUCTURE (`s`), depth first
/// with an explicit stack: a node's text is written in two halves, before
/// and after its children.
fn render(raw: &[u8], nodes: &[Node], b: &mut Out, s: &mut Out) {
    enum Visit {
        Open(usize),
        Close(usize),
    }
    let mut stack = vec![Visit::Open(0)];
    while let Some(v) = stack.pop() {
        match v {
            Visit::Open(i) => {
                let n = &nodes[i];
                let h = raw.get(n.header as usize..n.body as usize).unwrap_or(&[]);
                if n.kind == Kind::Multipart {
                    b.raw(b"(");
                    s.raw(b"(");
                    if n.children.is_empty() {
                        // RFC 9051 requires at least one body part; Dovecot shows an empty text part.
                        b.raw(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
                        s.raw(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)");
                    }
                    stack.push(Visit::Close(i));
                    stack.extend(n.children.iter().rev().map(|&c| Visit::Open(c)));
                    continue;
                }
                let body = raw.get(n.body as usize..(n.end as usize).max(n.body as usize)).unwrap_or(&[]);
                let (ty, sub, mut params) = content_type(h, n.in_digest);
                // Past the nesting limit: an opaque leaf, as Dovecot shows it.
                let (ty, sub) = if n.opaque { (b"application".to_vec(), b"octet-stream".to_vec()) } else { (ty, sub) };
                let enc = header::first(h, "Content-Transfer-Encoding");
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
                if n.kind == Kind::Message {
                    let inner = &nodes[n.children[0]];
                    let ih = raw.get(inner.header as usize..inner.body as usize).unwrap_or(&[]);
                    for o in [&mut *b, &mut *s] {
                        o.sp();
                        envelope(ih, o);
                        o.sp();
                    }
                    stack.push(Visit::Close(i));
                    stack.push(Visit::Open(n.children[0]));
                    continue;
                }
                if is_text {
                    for o in [&mut *b, &mut *s] {
                        o.sp().num(count_lf(body));
                    }
                }
                b.raw(b")");
                s.sp();
                extension(s, h, None);
                s.raw(b")");
            }
            Visit::Close(i) => {
                let n = &nodes[i];
                let h = raw.get(n.header as usize..n.body as usize).unwrap_or(&[]);
                if n.kind == Kind::Multipart {
                    let (_, sub, params) = content_type(h, n.in_digest);
                    b.sp().string(&sub, false).raw(b")");
                    s.sp().string(&sub, false).sp();
                    extension(s, h, Some(&params));
                    s.raw(b")");
                } else {
                    // A message part: its line count after the inner body.
                    let body = raw.get(n.body as usize..(n.end as usize).max(n.body as usize)).unwrap_or(&[]);
                    for o in [&mut *b, &mut *s] {
                        o.sp().num(count_lf(body));
                    }
                    b.raw(b")");
                    s.sp();
                    extension(s, h, None);
                    s.raw(b")");
                }
            }
        }
    }
}

/// Computes everything IMAP needs about a message's structure.
pub fn analyze(raw: &[u8]) -> Analysis {
    let header_len = header::header_len(raw) as u32;
    let mut env = Out::new();
    envelope(&raw[..header_len as usize], &mut env);
    let nodes = scan::parts(raw);
    let mut b = Out::new();
    let mut s = Out::new();
    render(raw, &nodes, &mut b, &mut s);
    let parts = nodes
        .iter()
        .filter(|n| n.listed)
        .map(|n| Part {
            path: n.path.clone(),
            header: n.header,
            body: n.body,
            end: n.end.max(n.body),
            kind: n.kind,
            transfer: n.transfer,
            inner_body: n.inner_body,
            text: n.text,
        })
        .collect();
    Analysis { envelope: env.flatten(), body: b.flatten(), bodystructure: s.flatten(), parts, header_len }
}

#[cfg(test)]
mod tests {
    use super::*;

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
