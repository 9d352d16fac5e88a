//! What SORT and THREAD compare, computed once when a message is stored
//! and kept in its cache (`super::Cache::sort_keys`), so that sorting and
//! threading never parse a header: the sent date (RFC 5256 2.2), the base
//! subject (2.1) and the first addresses in `i;unicode-casemap` form, the
//! display names of SORT=DISPLAY (RFC 5957), and the Message-ID and
//! references of the REFERENCES algorithm.

use super::address::{self, Addr};
use super::casemap::casemap;
use super::header;
use super::msgid;
use super::subject::base_subject;

/// What the keys mean and how they are encoded, as one number: bumped when
/// either changes (a collation fix, a new key), so that copies kept outside
/// the cache (the mailbox's key column) from an older build are dropped.
pub const FORMAT: u32 = 1;

/// Keys of one message, owned (as computed at delivery).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// The Date header in UTC seconds; None when it cannot be determined
    /// (the internal date stands in, RFC 5256 2.2).
    pub sent: Option<i64>,
    /// Base subject, casemapped.
    pub subject: String,
    /// Base subject extraction removed a reply or forward marker.
    pub reply: bool,
    /// addr-mailbox of the first From, To and Cc address, casemapped.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957: the first address's display name, else its addr-spec, casemapped.
    pub display_from: String,
    pub display_to: String,
    /// The Message-ID, normalized (msgid.rs).
    pub message_id: Option<String>,
    /// References, else the first In-Reply-To ID (RFC 5256 REFERENCES).
    pub references: Vec<String>,
}

/// Keys of one message as the cache holds them (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKeysRef<'a> {
    pub sent: Option<i64>,
    pub subject: &'a [u8],
    pub reply: bool,
    pub from: &'a [u8],
    pub to: &'a [u8],
    pub cc: &'a [u8],
    pub display_from: &'a [u8],
    pub display_to: &'a [u8],
    pub message_id: Option<&'a [u8]>,
    /// Length-prefixed IDs (see [`SortKeysRef::references`]).
    references: &'a [u8],
}

impl SortKeys {
    /// The keys of the message whose header block is `h`.
    pub fn of(h: &[u8]) -> SortKeys {
        let value = |name: &str| header::first(h, name);
        let subject = value("Subject").map(|v| header::decode("SUBJECT", &header::unfold(&v))).unwrap_or_default();
        let (base, reply) = base_subject(&subject);
        let from = value("From");
        let to = value("To");
        let cc = value("Cc");
        let first = |v: &Option<Vec<u8>>| v.as_deref().and_then(|v| address::first(v).map(Addr::into_owned));
        let (from, to, cc) = (first(&from), first(&to), first(&cc));
        let mailbox =
            |a: &Option<Addr<'static>>| a.as_ref().and_then(|a| a.mailbox.as_deref()).map(|m| casemap(&String::from_utf8_lossy(m))).unwrap_or_default();
        let references = match value("References").map(|v| msgid::ids(&v)).filter(|ids| !ids.is_empty()) {
            Some(ids) => ids,
            None => value("In-Reply-To").and_then(|v| msgid::first(&v)).into_iter().collect(),
        };
        SortKeys {
            sent: value("Date").and_then(|d| sent_date(&d)),
            subject: casemap(&base),
            reply,
            from: mailbox(&from),
            to: mailbox(&to),
            cc: mailbox(&cc),
            display_from: display(&from),
            display_to: display(&to),
            message_id: value("Message-ID").and_then(|v| msgid::first(&v)),
            references,
        }
    }

    /// The encoded keys of the message `raw`, from its header: for a
    /// message whose cache has none (see [`SortKeysRef::decode`]).
    pub fn encoded_of_message(raw: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        SortKeys::of(&raw[..header::header_len(raw)]).encode(&mut b);
        b
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sent.unwrap_or(i64::MIN).to_le_bytes());
        out.push(u8::from(self.reply));
        for s in [&self.subject, &self.from, &self.to, &self.cc, &self.display_from, &self.display_to] {
            put(out, s.as_bytes());
        }
        put(out, self.message_id.as_deref().unwrap_or("").as_bytes());
        let mut refs = Vec::new();
        for r in &self.references {
            put(&mut refs, r.as_bytes());
        }
        put(out, &refs);
    }
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl<'a> SortKeysRef<'a> {
    /// Reads what [`SortKeys::encode`] wrote; where it ends.
    pub fn decode(b: &'a [u8]) -> Option<(SortKeysRef<'a>, usize)> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let s = b.get(at..at.checked_add(n)?)?;
            at += n;
            Some(s)
        };
        let sent = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let reply = take(1)?[0] != 0;
        let mut strs = [&b[..0]; 8];
        for s in &mut strs {
            let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            *s = take(n)?;
        }
        let [subject, from, to, cc, display_from, display_to, message_id, references] = strs;
        let keys = SortKeysRef {
            sent: (sent != i64::MIN).then_some(sent),
            subject,
            reply,
            from,
            to,
            cc,
            display_from,
            display_to,
            message_id: (!message_id.is_empty()).then_some(message_id),
            references,
        };
        // Validate the reference list now so iteration cannot fail later.
        let mut r = references;
        while !r.is_empty() {
            let n = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
            r = r.get(4 + n..)?;
        }
        Some((keys, at))
    }

    /// The references, oldest first.
    pub fn references(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut r = self.references;
        std::iter::from_fn(move || {
            let n = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
            let id = r.get(4..4 + n)?;
            r = &r[4 + n..];
            Some(id)
        })
    }
}

/// RFC 5957 display form of an address: its decoded display name, or
/// `mailbox@host` when it has none.
fn display(a: &Option<Addr<'static>>) -> String {
    let Some(a) = a else { return String::new() };
    if let Some(n) = a.name.as_deref().filter(|n| !n.is_empty()) {
        return casemap(header::decode("FROM", n).trim());
    }
    let mut spec = String::from_utf8_lossy(a.mailbox.as_deref().unwrap_or_default()).into_owned();
    if let Some(h) = a.host.as_deref() {
        spec.push('@');
        spec.push_str(&String::from_utf8_lossy(h));
    }
    casemap(&spec)
}

/// The Date value as UTC seconds (RFC 5256 2.2: adjusted by its zone).
fn sent_date(v: &[u8]) -> Option<i64> {
    let mut msg = b"Date: ".to_vec();
    msg.extend_from_slice(v);
    msg.extend_from_slice(b"\r\n\r\n");
    let m = mail_parser::MessageParser::default().parse_headers(&msg)?;
    let d = m.date()?;
    if d.year == 0 || d.month == 0 || d.day == 0 {
        return None;
    }
    Some(d.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_reply() {
        let h = b"From: \"Jo Smith\" <Jo@Example.org>\r\nTo: list@x.org, b@y.org\r\nSubject: Re: [list] =?utf-8?q?caf=C3=A9?=\r\n\
Date: Sun, 31 Dec 2000 16:01:33 -0800\r\nMessage-ID: <\"m 1\"@x.org>\r\nIn-Reply-To: <m0@x.org>\r\nReferences: <r0@x.org> <m0@x.org>\r\n\r\n";
        let k = SortKeys::of(h);
        assert_eq!(k.sent, Some(978_307_293), "1 Jan 2001 00:01:33 UTC");
        assert_eq!(k.subject, "CAFE\u{301}");
        assert!(k.reply);
        assert_eq!((k.from.as_str(), k.to.as_str(), k.cc.as_str()), ("JO", "LIST", ""));
        assert_eq!(k.display_from, "JO SMITH");
        assert_eq!(k.display_to, "LIST@X.ORG");
        assert_eq!(k.message_id.as_deref(), Some("m 1@x.org"), "quotes go, what they quote stays");
        assert_eq!(k.references, vec!["r0@x.org", "m0@x.org"]);
        let mut b = Vec::new();
        k.encode(&mut b);
        let (r, end) = SortKeysRef::decode(&b).unwrap();
        assert_eq!(end, b.len());
        assert_eq!(r.subject, k.subject.as_bytes());
        assert_eq!(r.references().collect::<Vec<_>>(), vec![&b"r0@x.org"[..], b"m0@x.org"]);
        assert!(SortKeysRef::decode(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn missing_headers_are_empty_and_in_reply_to_stands_in() {
        let k = SortKeys::of(b"In-Reply-To: junk <p@x.org> <q@x.org>\r\n\r\n");
        assert_eq!(k.sent, None);
        assert_eq!((k.subject.as_str(), k.from.as_str(), k.display_from.as_str()), ("", "", ""));
        assert_eq!(k.references, vec!["p@x.org"]);
        assert_eq!(SortKeys::of(b"Date: not a date\r\n\r\n").sent, None);
    }
}
