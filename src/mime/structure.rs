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
use super::content::{parse_type_value, Kind, Params, Part};
use super::header;
use super::scan::{self, Node};
use crate::proto::Out;

/// The end of a non-multipart part in BODY (`b`) and BODYSTRUCTURE (`s`):
/// its line count (text and message parts), then the extension data.
fn close_part(b: &mut Out, s: &mut Out, h: &[u8], lines: Option<u64>) {
    if let Some(n) = lines {
        b.sp().num(n);
        s.sp().num(n);
    }
    b.raw(b")");
    s.sp();
    extension(s, h, None);
    s.raw(b")");
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
    // The unfolded values; the addresses borrow from them.
    let values: [Option<Vec<u8>>; 6] = ["From", "Sender", "Reply-To", "To", "Cc", "Bcc"].map(field);
    let [from, mut sender, mut reply_to, to, cc, bcc] = values.each_ref().map(|v| v.as_deref().map(address::parse_list).unwrap_or_default());
    if sender.is_empty() {
        sender = from.clone();
    }
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    o.raw(b"(");
    nstring(o, field("Date").as_deref());
    o.sp();
    nstring(o, field("Subject").as_deref());
    for list in [&from, &sender, &reply_to, &to, &cc, &bcc] {
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
                close_part(b, s, h, is_text.then(|| count_lf(body)));
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
                    close_part(b, s, h, Some(count_lf(body)));
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
