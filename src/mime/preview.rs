//! PREVIEW (RFC 8970): a short plain-text extract of a message for a
//! client's message list, made as Dovecot makes it so that both servers
//! show the same: the first text/plain part (else the first text/html one,
//! its markup removed), transfer encoding and charset undone, quoted lines
//! (`>`) left out, every run of white space one space, at most 200
//! characters (the RFC allows 256). A message without such a part has an
//! empty preview.

use super::content::{decode_transfer, parse_type_value, Kind, Part, Transfer};
use super::header;

/// Characters of a preview at most.
pub const MAX_CHARS: usize = 200;

/// Body bytes looked at: first a little, which is nearly always enough
/// (decoding is most of a preview's cost), then more for a part that
/// starts with long quotes or markup; never the whole of a large part.
const SCAN: [usize; 2] = [1 << 10, 16 << 10];

/// The preview of `raw`, whose MIME parts are `parts`.
pub fn of(raw: &[u8], parts: impl Iterator<Item = Part>) -> String {
    let mut html = None;
    for p in parts.filter(|p| p.kind == Kind::Leaf && p.text) {
        let Some(block) = raw.get(p.header as usize..p.body as usize) else { continue };
        if header::first(block, "Content-Disposition")
            .is_some_and(|d| parse_type_value(&d, false).is_some_and(|(t, _)| t.value.eq_ignore_ascii_case(b"attachment")))
        {
            continue;
        }
        let (subtype, charset) = match header::first(block, "Content-Type").and_then(|v| parse_type_value(&v, true)) {
            Some((t, sub)) => (sub.unwrap_or_default(), t.params.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(b"charset")).map(|(_, v)| v)),
            None => (b"plain".to_vec(), None),
        };
        if subtype.eq_ignore_ascii_case(b"plain") {
            return scan(raw, &p, charset.as_deref(), fold);
        }
        if html.is_none() && subtype.eq_ignore_ascii_case(b"html") {
            html = Some((p, charset));
        }
    }
    match html {
        // Every tag ends a word, as in Dovecot: `<b>you</b>&amp; me` is "you & me".
        Some((p, charset)) => scan(raw, &p, charset.as_deref(), |t| fold(&mail_parser::decoders::html::html_to_text(&t.replace('>', "> ")))),
        None => String::new(),
    }
}

/// `make` applied to the start of a part's text, taken longer when the
/// first try is short of [`MAX_CHARS`] and the part goes on.
fn scan(raw: &[u8], p: &Part, charset: Option<&[u8]>, make: impl Fn(&str) -> String) -> String {
    let mut made = String::new();
    for limit in SCAN {
        let (text, whole) = text_of(raw, p, charset, limit);
        made = make(&text);
        if whole || made.chars().count() >= MAX_CHARS {
            break;
        }
    }
    made
}

/// The text of a part's first `limit` body bytes, decoded (cut after a
/// line, so no escape or character is cut in two), and whether that is
/// the whole part.
fn text_of(raw: &[u8], p: &Part, charset: Option<&[u8]>, limit: usize) -> (String, bool) {
    let end = (p.end as usize).min(raw.len());
    let whole = end <= p.body as usize + limit;
    let Some(mut body) = raw.get(p.body as usize..end.min(p.body as usize + limit)) else { return (String::new(), true) };
    if !whole {
        body = &body[..memchr::memrchr(b'\n', body).map_or(body.len(), |i| i + 1)];
    }
    // A cut base64 body decodes up to its last whole quantum.
    let body = match p.transfer {
        Transfer::Base64 => {
            let clean: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            let whole = clean.len() / 4 * 4;
            decode_transfer(p.transfer, &clean[..whole])
        }
        t => decode_transfer(t, body),
    }
    .unwrap_or_else(|| body.to_vec());
    let text = match charset.and_then(mail_parser::decoders::charsets::map::charset_decoder) {
        Some(decode) => decode(&body),
        None => String::from_utf8_lossy(&body).into_owned(),
    };
    (text, whole)
}

/// Quoted lines out, white space folded, cut at [`MAX_CHARS`].
fn fold(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for line in text.lines().filter(|l| !l.trim_start().starts_with('>')) {
        for word in line.split_whitespace() {
            for c in (!out.is_empty()).then_some(' ').into_iter().chain(word.chars()) {
                if chars == MAX_CHARS {
                    return out;
                }
                out.push(c);
                chars += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(raw: &[u8]) -> String {
        of(raw, super::super::structure::analyze(raw).parts.into_iter())
    }

    #[test]
    fn plain_text_folded_without_quotes() {
        let m = b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello   there,\r\n\r\nthis is  a =C3=A9 test\r\n> quoted\r\n-- \r\nsig\r\n";
        assert_eq!(preview(m), "Hello there, this is a \u{e9} test -- sig");
    }

    #[test]
    fn plain_is_preferred_html_loses_its_markup_and_attachments_do_not_count() {
        let alt = b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>html first</p>\r\n--x\r\nContent-Type: text/plain\r\n\r\nplain second\r\n--x--\r\n";
        assert_eq!(preview(alt), "plain second");
        let html =
            b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n<html><head><style>p{}</style></head><body><p>Hi <b>you</b>&amp; m\xe9</p></body></html>\r\n";
        assert_eq!(preview(html), "Hi you & m\u{e9}");
        let att = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nnot this\r\n--x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--x--\r\n";
        assert_eq!(preview(att), "");
    }

    #[test]
    fn a_reply_under_a_long_quote_is_found_further_in() {
        let quote = "> an old line that was quoted in the reply\r\n".repeat(60);
        let m = format!("Content-Type: text/plain\r\n\r\n{quote}\r\nThe answer is yes.\r\n");
        assert!(quote.len() > SCAN[0]);
        assert_eq!(preview(m.as_bytes()), "The answer is yes.");
    }

    #[test]
    fn long_and_base64_text_is_cut_at_200_characters() {
        let body = "\u{e9}t\u{e9} ".repeat(300);
        let encoded = base64(body.as_bytes());
        let m = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n");
        let p = preview(m.as_bytes());
        assert_eq!(p.chars().count(), MAX_CHARS);
        assert!(p.starts_with("\u{e9}t\u{e9} \u{e9}t\u{e9}"));
    }

    fn base64(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for (i, c) in b.chunks(3).enumerate() {
            if i > 0 && i % 19 == 0 {
                s.push_str("\r\n");
            }
            let n = c.iter().enumerate().fold(0u32, |n, (k, &x)| n | u32::from(x) << (16 - 8 * k));
            for k in 0..4 {
                s.push(if k <= c.len() { A[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
            }
        }
        s
    }
}
