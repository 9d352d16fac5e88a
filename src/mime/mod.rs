//! MIME analysis done once, when a message arrives: ENVELOPE, BODY and
//! BODYSTRUCTURE as IMAP text, the byte range of every part, the sent date
//! and decoded address/subject text for SEARCH. The result is a compact blob
//! stored next to the message (the segment's cache record), so FETCH of
//! these items never parses the message again.
//!
//! Nothing here changes the message: every range points into its original
//! bytes, bare LF and 8-bit headers included.

pub mod address;
pub mod casemap;
pub mod content;
pub mod header;
pub mod msgid;
pub mod objectid;
pub mod preview;
pub mod scan;
pub mod sortkeys;
pub mod structure;
pub mod subject;

pub use content::{decode_transfer, Kind, Part, Transfer};
use sortkeys::{SortKeys, SortKeysRef};

/// Version 2 added the text flag of parts; version 3 the address forms of
/// the search text and the NUL flag; version 4 the sort and thread keys
/// (after the search text); version 5 moved them right after the fixed
/// fields, so SORT and THREAD read one or two cache lines per message
/// instead of skipping through the whole blob; version 6 the PREVIEW text
/// (RFC 8970) and the EMAILID hash (RFC 8474) after the search text.
/// Versions 2 to 5 are still read (their preview and hash are made when
/// asked for); older blobs are analysed again.
const VERSION: u8 = 6;

/// Where the sort keys begin in a version 5 or later blob: after the version, the
/// flags, the sent day and the header length.
const SORT_KEYS_AT: usize = 1 + 1 + 4 + 4;

/// Flag bits of a cache blob.
const HAS_NUL: u8 = 1;

/// Decoded header text kept for SEARCH, in this order.
pub const SEARCH_FIELDS: [&str; 5] = ["FROM", "TO", "CC", "BCC", "SUBJECT"];

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// An address field as SEARCH FROM/TO/CC/BCC sees it (RFC 9051 6.4.4,
/// as Dovecot matches): every address as `name <local@domain>`, comments
/// and folding gone and the name decoded, so `<user (comment)@ (c)
/// domain.org>` is found by `user@domain.org`.
fn address_text(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for a in address::parse_list(value) {
        let (Some(mb), Some(host)) = (&a.mailbox, &a.host) else { continue };
        if !out.is_empty() {
            out.push_str(", ");
        }
        if let Some(n) = a.name.as_deref() {
            let name = header::decode("FROM", n);
            let name = name.trim_start();
            if !name.is_empty() {
                out.push_str(name);
                out.push(' ');
            }
        }
        out.push('<');
        out.push_str(&String::from_utf8_lossy(mb));
        out.push('@');
        out.push_str(&String::from_utf8_lossy(host));
        out.push('>');
    }
    out
}

/// The local calendar date of a Date: header, as days since the epoch.
fn sent_days(h: &[u8]) -> Option<i32> {
    let v = header::first(h, "Date")?;
    let mut msg = b"Date: ".to_vec();
    msg.extend_from_slice(&v);
    msg.extend_from_slice(b"\r\n\r\n");
    let m = mail_parser::MessageParser::default().parse_headers(&msg)?;
    let d = m.date()?;
    if d.year == 0 || d.month == 0 || d.day == 0 {
        return None;
    }
    Some(crate::proto::days_from_civil(i64::from(d.year), u32::from(d.month), u32::from(d.day)) as i32)
}

/// Analyses a message and returns the cache blob.
pub fn analyze(raw: &[u8]) -> Vec<u8> {
    let a = structure::analyze(raw);
    let h = &raw[..a.header_len as usize];
    let mut out = Vec::with_capacity(a.envelope.len() + a.bodystructure.len() * 2 + 64 + a.parts.len() * 32);
    out.push(VERSION);
    out.push(if memchr::memchr(0, raw).is_some() { HAS_NUL } else { 0 });
    out.extend_from_slice(&sent_days(h).unwrap_or(i32::MIN).to_le_bytes());
    out.extend_from_slice(&a.header_len.to_le_bytes());
    debug_assert_eq!(out.len(), SORT_KEYS_AT);
    SortKeys::of(h).encode(&mut out);
    put_bytes(&mut out, &a.envelope);
    put_bytes(&mut out, &a.body);
    put_bytes(&mut out, &a.bodystructure);
    for name in SEARCH_FIELDS {
        let mut text: Vec<String> = Vec::new();
        for f in header::fields(h).filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes())) {
            let value = header::unfold(f.value);
            text.push(header::decode(name, &value));
            if name != "SUBJECT" {
                text.push(address_text(&value));
            }
        }
        put_bytes(&mut out, text.join("\n").as_bytes());
    }
    put_bytes(&mut out, preview::of(raw, a.parts.iter().cloned()).as_bytes());
    out.extend_from_slice(&objectid::email_hash(raw).to_le_bytes());
    out.extend_from_slice(&(a.parts.len() as u32).to_le_bytes());
    for p in &a.parts {
        out.push(p.path.len().min(255) as u8);
        for n in p.path.iter().take(255) {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for v in [p.header, p.body, p.end, p.inner_body] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(match p.kind {
            Kind::Leaf => 0,
            Kind::Multipart => 1,
            Kind::Message => 2,
        });
        out.push(match p.transfer {
            Transfer::Identity => 0,
            Transfer::Base64 => 1,
            Transfer::QuotedPrintable => 2,
            Transfer::Unknown => 3,
        });
        out.push(u8::from(p.text));
    }
    out
}

/// A read-only view of a cache blob. Parsing checks every length, so a
/// damaged blob is refused, never trusted.
pub struct Cache<'a> {
    /// The message holds NUL bytes (sent as 0x80 outside BINARY).
    pub has_nul: bool,
    pub sent_days: Option<i32>,
    pub header_len: u32,
    pub envelope: &'a [u8],
    pub body: &'a [u8],
    pub bodystructure: &'a [u8],
    search: [&'a [u8]; 5],
    /// What SORT and THREAD compare (version 4 on; older caches have none).
    pub sort: Option<SortKeysRef<'a>>,
    /// PREVIEW text and EMAILID hash (version 6 on; see [`Cache::preview`]
    /// and [`Cache::email_hash`]).
    preview: Option<&'a [u8]>,
    email_hash: Option<u128>,
    parts: &'a [u8],
    nparts: u32,
}

/// A message's entry in the mailbox's key column ([`Cache::column_entry`]):
/// what SORT, THREAD and SEARCH on the address and subject fields and the
/// sent date read of it, without its cache record.
pub struct ColumnEntry<'a> {
    pub sent_days: Option<i32>,
    keys: &'a [u8],
    search: [&'a [u8]; 5],
}

impl<'a> ColumnEntry<'a> {
    pub fn decode(b: &'a [u8]) -> Option<ColumnEntry<'a>> {
        let mut r = Reader { b, at: 0 };
        let sd = r.u32()? as i32;
        let keys = r.bytes()?;
        let mut search = [&b[..0]; 5];
        for s in &mut search {
            *s = r.bytes()?;
        }
        Some(ColumnEntry { sent_days: (sd != i32::MIN).then_some(sd), keys, search })
    }

    /// The sort keys (read only when asked for: a search steps over them).
    pub fn sort_keys(&self) -> Option<SortKeysRef<'a>> {
        SortKeysRef::decode(self.keys).map(|(k, _)| k)
    }

    /// Decoded text of a SEARCH_FIELDS entry, as `Cache::search_text`.
    pub fn search_text(&self, field: &str) -> Option<&'a [u8]> {
        search_text_of(&self.search, field)
    }
}

/// The text of `field` among the five SEARCH_FIELDS texts, in their order.
fn search_text_of<'a>(texts: &[&'a [u8]; SEARCH_FIELDS.len()], field: &str) -> Option<&'a [u8]> {
    SEARCH_FIELDS.iter().position(|f| f.eq_ignore_ascii_case(field)).map(|i| texts[i])
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    }
    fn u128(&mut self) -> Option<u128> {
        self.take(16).map(|b| u128::from_le_bytes(b.try_into().expect("16")))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

impl<'a> Cache<'a> {
    /// Whether a cache blob is of the version this build writes (else the
    /// store rewrites it in the background: `Mailbox::compact_step`).
    pub fn is_current(b: &[u8]) -> bool {
        b.first() == Some(&VERSION)
    }

    /// Only the sort keys of a cache blob (None before version 4, or
    /// damaged), without reading the rest of it: SORT and THREAD pay for
    /// nothing else.
    pub fn sort_keys(b: &'a [u8]) -> Option<SortKeysRef<'a>> {
        match *b.first()? {
            5..=VERSION => SortKeysRef::decode(b.get(SORT_KEYS_AT..)?).map(|(keys, _)| keys),
            4 => Cache::parse(b)?.sort,
            _ => None,
        }
    }

    /// What the mailbox's key column keeps of a cache blob
    /// (`store::mailbox::keys`; version 5 on, None for older or damaged
    /// blobs): the sent day (i32, `i32::MIN`: none), the sort keys exactly
    /// as stored (a u32 length first, so a search steps over them), then
    /// the five search texts. Read back with [`ColumnEntry::decode`].
    pub fn column_entry(b: &'a [u8]) -> Option<Vec<u8>> {
        if !matches!(*b.first()?, 5..=VERSION) {
            return None;
        }
        let c = Cache::parse(b)?;
        let rest = b.get(SORT_KEYS_AT..)?;
        let (_, len) = SortKeysRef::decode(rest)?;
        let mut out = Vec::with_capacity(8 + len + c.search.iter().map(|s| 4 + s.len()).sum::<usize>());
        out.extend_from_slice(&c.sent_days.unwrap_or(i32::MIN).to_le_bytes());
        put_bytes(&mut out, &rest[..len]);
        for s in c.search {
            put_bytes(&mut out, s);
        }
        Some(out)
    }

    pub fn parse(b: &'a [u8]) -> Option<Cache<'a>> {
        let mut r = Reader { b, at: 0 };
        // Version 2 blobs (from before the NUL flag) are still read: their
        // NUL flag is unknown, so it is set (readers then look).
        let version = r.u8()?;
        let flags = match version {
            3..=VERSION => r.u8()?,
            2 => HAS_NUL,
            _ => return None,
        };
        let sd = r.u32()? as i32;
        let header_len = r.u32()?;
        let mut sort = None;
        if version >= 5 {
            let (keys, len) = SortKeysRef::decode(&b[r.at..])?;
            r.at += len;
            sort = Some(keys);
        }
        let envelope = r.bytes()?;
        let body = r.bytes()?;
        let bodystructure = r.bytes()?;
        let mut search = [&b[..0]; 5];
        for s in &mut search {
            *s = r.bytes()?;
        }
        if version == 4 {
            let (keys, len) = SortKeysRef::decode(&b[r.at..])?;
            r.at += len;
            sort = Some(keys);
        }
        let (preview, email_hash) = if version >= 6 { (Some(r.bytes()?), Some(r.u128()?)) } else { (None, None) };
        let nparts = r.u32()?;
        let parts = &b[r.at..];
        let c = Cache {
            has_nul: flags & HAS_NUL != 0,
            sent_days: (sd != i32::MIN).then_some(sd),
            header_len,
            envelope,
            body,
            bodystructure,
            search,
            sort,
            preview,
            email_hash,
            parts,
            nparts,
        };
        // Validate the part table once so iteration cannot fail later.
        parts_fit(parts, nparts).then_some(c)
    }

    /// The PREVIEW text (RFC 8970) of `raw`, the message this cache is
    /// of: kept since version 6, made now for older blobs.
    pub fn preview(&self, raw: &[u8]) -> String {
        match self.preview {
            Some(p) => String::from_utf8_lossy(p).into_owned(),
            None => preview::of(raw, self.iter_parts()),
        }
    }

    /// The EMAILID hash (RFC 8474) of `raw`, the message this cache is of:
    /// kept since version 6, taken now for older blobs.
    pub fn email_hash(&self, raw: &[u8]) -> u128 {
        self.email_hash.unwrap_or_else(|| objectid::email_hash(raw))
    }

    /// The EMAILID and THREADID (RFC 8474 5) of `raw`, the message this
    /// cache is of (a cache from before the sort keys has them made from
    /// the header).
    pub fn object_ids(&self, raw: &[u8]) -> (String, String) {
        let e = self.email_hash(raw);
        let thread = match &self.sort {
            Some(k) => objectid::thread_id(Some(k), e),
            None => {
                let b = SortKeys::encoded_of_message(raw);
                objectid::thread_id(SortKeysRef::decode(&b).map(|(k, _)| k).as_ref(), e)
            }
        };
        (objectid::email_id(e), thread)
    }

    /// Decoded text of a SEARCH_FIELDS entry.
    pub fn search_text(&self, field: &str) -> Option<&'a [u8]> {
        search_text_of(&self.search, field)
    }

    /// Each part as `parts_fit` checked it.
    pub fn iter_parts(&self) -> impl Iterator<Item = Part> + 'a {
        let mut r = Reader { b: self.parts, at: 0 };
        let n = self.nparts;
        (0..n).map_while(move |_| {
            let len = r.u8()? as usize;
            let mut path = Vec::with_capacity(len);
            for _ in 0..len {
                path.push(r.u32()?);
            }
            let header = r.u32()?;
            let body = r.u32()?;
            let end = r.u32()?;
            let inner_body = r.u32()?;
            let kind = match r.u8()? {
                1 => Kind::Multipart,
                2 => Kind::Message,
                _ => Kind::Leaf,
            };
            let transfer = match r.u8()? {
                0 => Transfer::Identity,
                1 => Transfer::Base64,
                2 => Transfer::QuotedPrintable,
                _ => Transfer::Unknown,
            };
            let text = r.u8()? != 0;
            Some(Part { path, header, body, end, kind, transfer, inner_body, text })
        })
    }

    pub fn part(&self, path: &[u32]) -> Option<Part> {
        self.iter_parts().find(|p| p.path == path)
    }
}

/// Whether `b` holds `n` whole part records as `Cache::iter_parts` reads
/// them: the same walk without building any (every SEARCH parses the
/// cache of every message it looks at).
fn parts_fit(b: &[u8], n: u32) -> bool {
    /// Header, body, end and inner body offsets, kind, transfer, text.
    const FIXED: usize = 4 * 4 + 3;
    let mut at = 0usize;
    for _ in 0..n {
        let Some(&len) = b.get(at) else { return false };
        at += 1 + 4 * usize::from(len) + FIXED;
        if at > b.len() {
            return false;
        }
    }
    true
}

/// A message APPENDed as binary (RFC 3516 4.4, a `~{n}` literal) with its
/// binary parts (Content-Transfer-Encoding: binary, or NUL bytes in the
/// content) re-encoded as base64, as Dovecot stores them: FETCH BODY[...]
/// may not send NUL (RFC 9051 4.3), and BINARY[...] decodes them back.
/// None when nothing needs converting.
pub fn base64_binary_parts(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    rewrite_leaves(raw, |n, header_block, body| {
        let cte = header::first(header_block, "Content-Transfer-Encoding");
        let binary = cte.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(b"binary"));
        if !(binary || (n.transfer == Transfer::Identity && memchr::memchr(0, body).is_some())) {
            return None;
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        let mut lines = Vec::with_capacity(encoded.len() + encoded.len() / 38);
        for line in encoded.as_bytes().chunks(76) {
            lines.extend_from_slice(line);
            lines.extend_from_slice(b"\r\n");
        }
        Some((Some(&b"base64"[..]), lines))
    })
}

/// An entity (a message, or a part with its MIME header) with every
/// base64 or quoted-printable leaf decoded: the binary form URLFETCH's
/// BINARY (RFC 5524) gives of a message or multipart part, as Dovecot
/// does, each such leaf then labelled `binary` when `relabel`. None when
/// nothing is encoded.
pub fn decoded_leaves(raw: &[u8], relabel: bool) -> Option<Vec<u8>> {
    rewrite_leaves(raw, |n, _, body| match n.transfer {
        Transfer::Base64 | Transfer::QuotedPrintable => Some((relabel.then_some(&b"binary"[..]), decode_transfer(n.transfer, body)?)),
        _ => None,
    })
}

/// `raw` with the leaves `change` returns something for replaced: their
/// body by its second value, and their Content-Transfer-Encoding by the
/// first (None: the header stays as it is). None when nothing changed.
fn rewrite_leaves(raw: &[u8], mut change: impl FnMut(&scan::Node, &[u8], &[u8]) -> Option<(Option<&'static [u8]>, Vec<u8>)>) -> Option<Vec<u8>> {
    let nodes = scan::parts(raw);
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() + raw.len() / 3);
    let mut at = 0usize;
    for n in nodes.iter().filter(|n| n.kind == Kind::Leaf) {
        let (h, b, e) = (n.header as usize, n.body as usize, (n.end as usize).max(n.body as usize));
        let (Some(header_block), Some(body)) = (raw.get(h..b), raw.get(b..e)) else { continue };
        if h < at {
            continue;
        }
        let Some((cte, new_body)) = change(n, header_block, body) else { continue };
        out.extend_from_slice(&raw[at..h]);
        match cte {
            Some(cte) => with_encoding(&mut out, header_block, cte),
            None => out.extend_from_slice(header_block),
        }
        out.extend_from_slice(&new_body);
        at = e;
    }
    if at == 0 {
        return None;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

/// `header_block` (fields and the blank line) with its
/// Content-Transfer-Encoding field set to `cte` (added before the blank
/// line if it has none).
fn with_encoding(out: &mut Vec<u8>, header_block: &[u8], cte: &[u8]) {
    let field = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"Content-Transfer-Encoding: ");
        out.extend_from_slice(cte);
        out.extend_from_slice(b"\r\n");
    };
    let mut replaced = false;
    let mut cursor = 0;
    for f in header::fields(header_block) {
        let start = f.raw.as_ptr() as usize - header_block.as_ptr() as usize;
        if f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") && !replaced {
            out.extend_from_slice(&header_block[cursor..start]);
            field(out);
            cursor = start + f.raw.len();
            replaced = true;
        }
    }
    let rest = &header_block[cursor..];
    let blank = if rest.ends_with(b"\r\n\r\n") || rest == b"\r\n" {
        2
    } else if rest.ends_with(b"\n\n") || rest == b"\n" {
        1
    } else {
        0
    };
    out.extend_from_slice(&rest[..rest.len() - blank]);
    if !replaced {
        field(out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
pub(crate) mod tests;
