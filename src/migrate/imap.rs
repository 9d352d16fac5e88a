//! Any IMAP server as a source: LOGIN or AUTHENTICATE PLAIN, implicit TLS
//! or STARTTLS, one connection per reader (so several fetch at once),
//! mailboxes from LIST (with SPECIAL-USE attributes) and LSUB, messages by
//! UID FETCH with BODY.PEEK[] (nothing is marked \Seen), mailboxes opened
//! with EXAMINE (read-only). With CONDSTORE (RFC 7162) a later run asks
//! only for messages changed since the HIGHESTMODSEQ of the run before.
//!
//! A small blocking client: the import is a batch job on one thread per
//! connection, and the server's monoio runtime has nothing to do with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::model::{Listing, Locator, Reader, Since, Source, SourceBox, SourceMsg};
use crate::store::format::SYSTEM_FLAGS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Cleartext (loopback and trusted networks only, one hopes).
    None,
    /// TLS from the first byte (port 993).
    Tls,
    /// STARTTLS before logging in (port 143).
    StartTls,
}

#[derive(Clone)]
pub struct ImapSource {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Certificates checked against the host's CAs unless `insecure`.
    pub insecure: bool,
    pub user: String,
    pub password: String,
    /// Whose mail to read when `user` is a master (admin) user: the SASL
    /// PLAIN authorization identity (RFC 4616), as Dovecot's master users
    /// and most servers' admin logins take it.
    pub authzid: Option<String>,
}

impl ImapSource {
    fn connect(&self) -> Result<Conn, String> {
        Conn::open(self)
    }
}

impl Source for ImapSource {
    fn id(&self) -> String {
        format!("imap:{}@{}:{}", self.authzid.as_deref().unwrap_or(&self.user), self.host, self.port)
    }

    fn mailboxes(&self) -> Result<Vec<SourceBox>, String> {
        let mut c = self.connect()?;
        let boxes = c.mailboxes()?;
        c.logout();
        Ok(boxes)
    }

    fn reader(&self) -> Result<Box<dyn Reader>, String> {
        Ok(Box::new(self.connect()?))
    }
}

/// A parsed response value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Atom(String),
    Str(Vec<u8>),
    List(Vec<V>),
    Nil,
}

impl V {
    fn text(&self) -> Option<String> {
        match self {
            V::Atom(a) => Some(a.clone()),
            V::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr>(&self) -> Option<T> {
        self.text()?.parse().ok()
    }
}

/// Parses the values of a response (literal bytes inline after `{n}\r\n`).
fn parse_values(b: &[u8]) -> Vec<V> {
    fn value(b: &[u8], i: &mut usize) -> Option<V> {
        while *i < b.len() && matches!(b[*i], b' ' | b'\r' | b'\n') {
            *i += 1;
        }
        let c = *b.get(*i)?;
        match c {
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                *i += 1;
                let mut items = Vec::new();
                loop {
                    while *i < b.len() && matches!(b[*i], b' ' | b'\r' | b'\n') {
                        *i += 1;
                    }
                    match b.get(*i) {
                        None => return Some(V::List(items)),
                        Some(&x) if x == close => {
                            *i += 1;
                            return Some(V::List(items));
                        }
                        _ => items.push(value(b, i)?),
                    }
                }
            }
            b')' | b']' => None,
            b'"' => {
                *i += 1;
                let mut s = Vec::new();
                while let Some(&x) = b.get(*i) {
                    *i += 1;
                    match x {
                        b'\\' => {
                            if let Some(&y) = b.get(*i) {
                                s.push(y);
                                *i += 1;
                            }
                        }
                        b'"' => break,
                        _ => s.push(x),
                    }
                }
                Some(V::Str(s))
            }
            b'{' => {
                let close = b[*i..].iter().position(|&x| x == b'}')? + *i;
                let n: usize = std::str::from_utf8(&b[*i + 1..close]).ok()?.trim_end_matches('+').parse().ok()?;
                let start = close + 3; // "}\r\n"
                let end = start.saturating_add(n).min(b.len());
                *i = end;
                Some(V::Str(b.get(start..end)?.to_vec()))
            }
            _ => {
                let start = *i;
                // An atom; `BODY[]` and `BODY[HEADER]` stay one atom.
                let mut depth = 0;
                while let Some(&x) = b.get(*i) {
                    match x {
                        b'[' => depth += 1,
                        b']' if depth > 0 => depth -= 1,
                        b' ' | b'(' | b')' | b']' | b'\r' | b'\n' if depth == 0 => break,
                        _ => {}
                    }
                    *i += 1;
                }
                if start == *i {
                    return None;
                }
                let a = String::from_utf8_lossy(&b[start..*i]).into_owned();
                Some(if a.eq_ignore_ascii_case("NIL") { V::Nil } else { V::Atom(a) })
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(v) = value(b, &mut i) {
        out.push(v);
    }
    out
}

/// A quoted string for a command.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Largest literal taken from a source server (a message).
const MAX_LITERAL: usize = 1 << 30;

/// INTERNALDATE (`27-Nov-2026 12:00:00 +0100`) in seconds since the epoch,
/// read by the parser APPEND's date goes through; a single-digit day
/// without its padding space is taken too.
pub fn parse_internal_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let padded = if s.len() == 25 { format!(" {s}") } else { s.to_string() };
    crate::proto::parse::parse_date_time(padded.as_bytes()).map(|d| d.unix)
}

fn flags_of(v: &V) -> (u8, Vec<String>) {
    let mut flags = 0;
    let mut kw = Vec::new();
    if let V::List(items) = v {
        for f in items.iter().filter_map(V::text) {
            if let Some((bit, _)) = SYSTEM_FLAGS.iter().find(|(_, n)| n.eq_ignore_ascii_case(&f)) {
                flags |= bit;
            } else if !f.starts_with('\\') {
                kw.push(f);
            }
        }
    }
    (flags, kw)
}

/// The connection's bytes: cleartext, or TLS over the same socket.
enum Net {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// While STARTTLS swaps one for the other.
    Swapping,
}

impl Read for Net {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Net::Plain(s) => s.read(buf),
            Net::Tls(s) => s.read(buf),
            Net::Swapping => Ok(0),
        }
    }
}

impl Write for Net {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Net::Plain(s) => s.write(buf),
            Net::Tls(s) => s.write(buf),
            Net::Swapping => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Net::Plain(s) => s.flush(),
            Net::Tls(s) => s.flush(),
            Net::Swapping => Ok(()),
        }
    }
}

/// One logged-in connection.
struct Conn {
    io: BufReader<Net>,
    tag: u32,
    caps: Vec<String>,
    /// The mailbox EXAMINEd, with its UIDVALIDITY and HIGHESTMODSEQ.
    selected: Option<(String, u32, Option<u64>)>,
    delimiter: Option<char>,
}

fn tls_config(insecure: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder();
    let config = if insecure {
        let provider = rustls::crypto::CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn tls_stream(tcp: TcpStream, host: &str, insecure: bool) -> Result<Net, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let conn = rustls::ClientConnection::new(tls_config(insecure)?, name).map_err(|e| format!("TLS: {e}"))?;
    Ok(Net::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

impl Conn {
    fn open(s: &ImapSource) -> Result<Conn, String> {
        let addr = format!("{}:{}", s.host, s.port);
        let tcp = TcpStream::connect(&addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(300)));
        let _ = tcp.set_nodelay(true);
        let stream = match s.security {
            Security::Tls => tls_stream(tcp, &s.host, s.insecure)?,
            _ => Net::Plain(tcp),
        };
        let mut c = Conn { io: BufReader::with_capacity(256 << 10, stream), tag: 0, caps: Vec::new(), selected: None, delimiter: None };
        let greeting = c.read_response()?;
        if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
            return Err(format!("{addr} greeted with {}", String::from_utf8_lossy(&greeting).trim_end()));
        }
        if s.security == Security::StartTls {
            c.command("STARTTLS", |_| {})?;
            let tcp = c.take_tcp()?;
            c.io = BufReader::with_capacity(256 << 10, tls_stream(tcp, &s.host, s.insecure)?);
        }
        c.refresh_caps()?;
        let failed = |e: String| format!("{}: login failed: {e}", s.user);
        if let Some(authzid) = &s.authzid {
            if !c.has("AUTH=PLAIN") {
                return Err(format!("{}:{} offers no AUTHENTICATE PLAIN, which a master-user login needs", s.host, s.port));
            }
            c.authenticate_plain(&format!("{authzid}\0{}\0{}", s.user, s.password)).map_err(failed)?;
        } else if c.has("AUTH=PLAIN") && c.has("SASL-IR") {
            c.authenticate_plain(&format!("\0{}\0{}", s.user, s.password)).map_err(failed)?;
        } else {
            c.command(&format!("LOGIN {} {}", quote(&s.user), quote(&s.password)), |_| {}).map_err(|e| format!("{}: login failed: {e}", s.user))?;
        }
        c.refresh_caps()?;
        if c.has("CONDSTORE") {
            c.command("ENABLE CONDSTORE", |_| {}).ok();
        }
        Ok(c)
    }

    /// The cleartext socket, for STARTTLS to put TLS on.
    fn take_tcp(&mut self) -> Result<TcpStream, String> {
        let old = std::mem::replace(&mut self.io, BufReader::new(Net::Swapping));
        if !old.buffer().is_empty() {
            // RFC 9051 6.2.1: nothing may follow the OK before TLS starts.
            return Err("the server sent data after its STARTTLS answer".into());
        }
        match old.into_inner() {
            Net::Plain(tcp) => Ok(tcp),
            _ => Err("STARTTLS on a connection that already has TLS".into()),
        }
    }

    /// AUTHENTICATE PLAIN with this message: as an initial response (RFC
    /// 4959) when the server takes one, else after its continuation.
    fn authenticate_plain(&mut self, message: &str) -> Result<(), String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(message);
        if self.has("SASL-IR") {
            return self.command(&format!("AUTHENTICATE PLAIN {b64}"), |_| {});
        }
        self.tag += 1;
        let tag = format!("i{}", self.tag);
        let io = |e: std::io::Error| format!("connection: {e}");
        let w = self.io.get_mut();
        w.write_all(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes()).and_then(|_| w.flush()).map_err(io)?;
        let r = self.read_response()?;
        if !r.starts_with(b"+") {
            return Err(String::from_utf8_lossy(&r).trim_end().to_string());
        }
        let w = self.io.get_mut();
        w.write_all(format!("{b64}\r\n").as_bytes()).and_then(|_| w.flush()).map_err(io)?;
        loop {
            let r = self.read_response()?;
            if let Some(status) = tagged_status(&r, &tag) {
                return if status.starts_with("OK") { Ok(()) } else { Err(status) };
            }
        }
    }

    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn refresh_caps(&mut self) -> Result<(), String> {
        let mut caps = Vec::new();
        self.command("CAPABILITY", |r| {
            if r.starts_with(b"* CAPABILITY ") {
                caps = String::from_utf8_lossy(&r[13..]).split_whitespace().map(str::to_string).collect();
            }
        })?;
        self.caps = caps;
        Ok(())
    }

    /// One response: a line, with any literals it announces read into it.
    fn read_response(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let n = self.io.read_until(b'\n', &mut out).map_err(|e| format!("connection: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            let line_end = out.len();
            let body = out[..line_end].strip_suffix(b"\r\n").or_else(|| out[..line_end].strip_suffix(b"\n")).unwrap_or(&out[..line_end]);
            let lit = body.strip_suffix(b"}").and_then(|b| {
                let open = b.iter().rposition(|&c| c == b'{')?;
                std::str::from_utf8(&b[open + 1..]).ok()?.trim_end_matches('+').parse::<usize>().ok()
            });
            match lit {
                Some(n) if n > MAX_LITERAL => return Err(format!("the server announced a literal of {n} bytes")),
                Some(n) => {
                    let start = out.len();
                    out.resize(start + n, 0);
                    self.io.read_exact(&mut out[start..]).map_err(|e| format!("connection: {e}"))?;
                }
                None => return Ok(out),
            }
        }
    }

    /// Sends a command; hands every untagged response to `each`; Ok on OK.
    fn command(&mut self, cmd: &str, mut each: impl FnMut(&[u8])) -> Result<(), String> {
        self.tag += 1;
        let tag = format!("i{}", self.tag);
        let w = self.io.get_mut();
        w.write_all(format!("{tag} {cmd}\r\n").as_bytes()).and_then(|_| w.flush()).map_err(|e| format!("connection: {e}"))?;
        loop {
            let r = self.read_response()?;
            if let Some(status) = tagged_status(&r, &tag) {
                return if status.starts_with("OK") { Ok(()) } else { Err(status) };
            }
            if r.starts_with(b"* BYE") && !cmd.eq_ignore_ascii_case("LOGOUT") {
                return Err(String::from_utf8_lossy(&r).trim_end().to_string());
            }
            each(&r);
        }
    }

    fn logout(&mut self) {
        let _ = self.command("LOGOUT", |_| {});
    }

    fn mailboxes(&mut self) -> Result<Vec<SourceBox>, String> {
        let mut listed: Vec<(String, Vec<String>)> = Vec::new();
        let mut delim = None;
        self.command("LIST \"\" \"*\"", |r| {
            if let Some((attrs, d, name)) = list_line(r, b"* LIST ") {
                delim = delim.or(d);
                listed.push((name, attrs));
            }
        })?;
        self.delimiter = delim;
        let mut subscribed = Vec::new();
        self.command("LSUB \"\" \"*\"", |r| {
            if let Some((_, _, name)) = list_line(r, b"* LSUB ") {
                subscribed.push(name);
            }
        })?;
        let to_name = |n: &str| {
            let n = crate::proto::utf7::decode(n.as_bytes()).unwrap_or_else(|| n.to_string());
            let n = match delim {
                Some(d) if d != '/' => n.replace(d, "/"),
                _ => n,
            };
            if n.eq_ignore_ascii_case("INBOX") {
                "INBOX".to_string()
            } else {
                n
            }
        };
        let subscribed: Vec<String> = subscribed.iter().map(|n| to_name(n)).collect();
        let mut out = Vec::new();
        for (raw, attrs) in listed {
            let name = to_name(&raw);
            let noselect = attrs.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"));
            let special_use = attrs
                .iter()
                .find(|a| ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"].iter().any(|s| s.eq_ignore_ascii_case(a)))
                .cloned();
            let mut b = SourceBox { subscribed: Some(subscribed.contains(&name)), name, special_use, noselect, ..Default::default() };
            if !noselect {
                let mut status = (None, None, None);
                let cmd = if self.has("CONDSTORE") { "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)" } else { "(UIDVALIDITY UIDNEXT)" };
                self.command(&format!("STATUS {} {cmd}", quote(&raw)), |r| {
                    let v = parse_values(r);
                    if let Some(V::List(items)) = v.get(3) {
                        for kv in items.chunks(2) {
                            match (kv[0].text().map(|t| t.to_ascii_uppercase()).as_deref(), kv.get(1)) {
                                (Some("UIDVALIDITY"), Some(x)) => status.0 = x.number(),
                                (Some("UIDNEXT"), Some(x)) => status.1 = x.number(),
                                (Some("HIGHESTMODSEQ"), Some(x)) => status.2 = x.number(),
                                _ => {}
                            }
                        }
                    }
                })?;
                (b.uidvalidity, b.uidnext, b.highest_modseq) = status;
            }
            out.push(b);
        }
        Ok(out)
    }

    /// The source's name of a mailbox the import calls `name`.
    fn source_name(&self, name: &str) -> String {
        let n = match self.delimiter {
            Some(d) if d != '/' => name.replace('/', &d.to_string()),
            _ => name.to_string(),
        };
        crate::proto::utf7::encode(&n)
    }

    fn examine(&mut self, b: &SourceBox) -> Result<(), String> {
        if self.delimiter.is_none() {
            let mut delim = None;
            self.command("LIST \"\" \"\"", |r| {
                if let Some((_, d, _)) = list_line(r, b"* LIST ") {
                    delim = d;
                }
            })?;
            self.delimiter = delim;
        }
        if self.selected.as_ref().is_some_and(|s| s.0 == b.name) {
            return Ok(());
        }
        let (mut uv, mut modseq) = (None, None);
        let cmd = format!("EXAMINE {}{}", quote(&self.source_name(&b.name)), if self.has("CONDSTORE") { " (CONDSTORE)" } else { "" });
        self.command(&cmd, |r| {
            let v = parse_values(r);
            if let (Some(V::Atom(ok)), Some(V::List(code))) = (v.get(1), v.get(2)) {
                if ok.eq_ignore_ascii_case("OK") {
                    match code.first().and_then(V::text).map(|t| t.to_ascii_uppercase()).as_deref() {
                        Some("UIDVALIDITY") => uv = code.get(1).and_then(V::number),
                        Some("HIGHESTMODSEQ") => modseq = code.get(1).and_then(V::number),
                        _ => {}
                    }
                }
            }
        })?;
        let uv = uv.ok_or_else(|| format!("{:?}: the server gave no UIDVALIDITY", b.name))?;
        if b.uidvalidity.is_some_and(|want| want != uv) {
            return Err(format!("{:?}: UIDVALIDITY changed during the import; run it again", b.name));
        }
        self.selected = Some((b.name.clone(), uv, modseq));
        Ok(())
    }

    fn fetch_meta(&mut self, range: &str, items: &str, modifier: &str, out: &mut Vec<SourceMsg>) -> Result<(), String> {
        self.command(&format!("UID FETCH {range} ({items}){modifier}"), |r| {
            let v = parse_values(r);
            if !matches!(v.get(2), Some(V::Atom(a)) if a.eq_ignore_ascii_case("FETCH")) {
                return;
            }
            let Some(V::List(items)) = v.get(3) else { return };
            let mut m = SourceMsg { uid: 0, flags: 0, keywords: Vec::new(), internal_date: 0, size: 0, at: Locator::Uid };
            for kv in items.chunks(2) {
                let Some(val) = kv.get(1) else { continue };
                match kv[0].text().map(|t| t.to_ascii_uppercase()).as_deref() {
                    Some("UID") => m.uid = val.number().unwrap_or(0),
                    Some("FLAGS") => (m.flags, m.keywords) = flags_of(val),
                    Some("INTERNALDATE") => m.internal_date = val.text().and_then(|t| parse_internal_date(&t)).unwrap_or(0),
                    Some("RFC822.SIZE") => m.size = val.number().unwrap_or(0),
                    _ => {}
                }
            }
            if m.uid != 0 {
                out.push(m);
            }
        })
    }
}

/// The status text of the tagged response to `tag`, if `r` is that.
fn tagged_status(r: &[u8], tag: &str) -> Option<String> {
    let rest = r.strip_prefix(tag.as_bytes())?.strip_prefix(b" ")?;
    Some(String::from_utf8_lossy(rest).trim_end().to_string())
}

/// A LIST/LSUB response's attributes, delimiter and (raw) name.
fn list_line(r: &[u8], prefix: &[u8]) -> Option<(Vec<String>, Option<char>, String)> {
    if r.len() < prefix.len() || !r[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let v = parse_values(&r[prefix.len()..]);
    let attrs = match v.first()? {
        V::List(a) => a.iter().filter_map(V::text).collect(),
        _ => return None,
    };
    let delim = match v.get(1)? {
        V::Str(d) => d.first().map(|&c| c as char),
        _ => None,
    };
    let name = match v.get(2)? {
        V::Str(s) => String::from_utf8_lossy(s).into_owned(),
        V::Atom(a) => a.clone(),
        _ => return None,
    };
    Some((attrs, delim, name))
}

/// UID sets of at most `max` UIDs each, as `a:b,c` runs.
fn uid_sets(uids: &[u32], max: usize) -> Vec<String> {
    uids.chunks(max)
        .map(|chunk| {
            let mut s = String::new();
            let mut i = 0;
            while i < chunk.len() {
                let mut j = i;
                while j + 1 < chunk.len() && chunk[j + 1] == chunk[j] + 1 {
                    j += 1;
                }
                if !s.is_empty() {
                    s.push(',');
                }
                if i == j {
                    s.push_str(&chunk[i].to_string());
                } else {
                    s.push_str(&format!("{}:{}", chunk[i], chunk[j]));
                }
                i = j + 1;
            }
            s
        })
        .collect()
}

impl Reader for Conn {
    fn list(&mut self, b: &SourceBox, since: Option<Since>) -> Result<Listing, String> {
        self.selected = None;
        self.examine(b)?;
        let modseq_now = self.selected.as_ref().and_then(|s| s.2);
        let mut msgs = Vec::new();
        match since.and_then(|s| s.modseq.filter(|_| modseq_now.is_some()).map(|m| (s.last_uid, m))) {
            Some((last, modseq)) => {
                // New messages in full; older ones only if their flags changed.
                self.fetch_meta(&format!("{}:*", last + 1), "UID FLAGS INTERNALDATE RFC822.SIZE", "", &mut msgs)?;
                msgs.retain(|m| m.uid > last);
                if last > 0 && modseq_now != Some(modseq) {
                    self.fetch_meta(&format!("1:{last}"), "UID FLAGS", &format!(" (CHANGEDSINCE {modseq})"), &mut msgs)?;
                }
                let mut all = Vec::new();
                self.command("UID SEARCH ALL", |r| {
                    if let Some(rest) = r.strip_prefix(b"* SEARCH") {
                        all.extend(String::from_utf8_lossy(rest).split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                    }
                })?;
                msgs.sort_by_key(|m| m.uid);
                msgs.dedup_by_key(|m| m.uid);
                all.sort_unstable();
                Ok(Listing { msgs, all_uids: Some(all) })
            }
            None => {
                self.fetch_meta("1:*", "UID FLAGS INTERNALDATE RFC822.SIZE", "", &mut msgs)?;
                msgs.sort_by_key(|m| m.uid);
                msgs.dedup_by_key(|m| m.uid);
                Ok(Listing { msgs, all_uids: None })
            }
        }
    }

    fn fetch(&mut self, b: &SourceBox, msgs: &[SourceMsg]) -> Vec<Result<Vec<u8>, String>> {
        if let Err(e) = self.examine(b) {
            return msgs.iter().map(|_| Err(e.clone())).collect();
        }
        let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
        let mut got: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::with_capacity(uids.len());
        for set in uid_sets(&uids, 500) {
            let r = self.command(&format!("UID FETCH {set} (UID BODY.PEEK[])"), |r| {
                let v = parse_values(r);
                let Some(V::List(items)) = v.get(3) else { return };
                let (mut uid, mut body) = (None, None);
                for kv in items.chunks(2) {
                    match (kv[0].text().map(|t| t.to_ascii_uppercase()).as_deref(), kv.get(1)) {
                        (Some("UID"), Some(x)) => uid = x.number::<u32>(),
                        (Some("BODY[]"), Some(V::Str(s))) => body = Some(s.clone()),
                        (Some("BODY[]"), Some(V::Nil)) => body = Some(Vec::new()),
                        _ => {}
                    }
                }
                if let (Some(u), Some(b)) = (uid, body) {
                    got.insert(u, b);
                }
            });
            if let Err(e) = r {
                return msgs.iter().map(|_| Err(format!("UID FETCH: {e}"))).collect();
            }
        }
        msgs.iter().map(|m| got.remove(&m.uid).ok_or_else(|| format!("UID {}: expunged on the source meanwhile", m.uid))).collect()
    }
}

/// `--insecure`: any certificate will do (a source with a self-signed one).
#[derive(Debug)]
/// Signatures are still checked (the handshake proves the server holds the
/// key), with this provider's algorithms.
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_literals_and_lists_parse() {
        let v = parse_values(b"* 3 FETCH (UID 9 FLAGS (\\Seen $Work) BODY[] {5}\r\nab\r\nc)\r\n");
        assert_eq!(v[2], V::Atom("FETCH".into()));
        let V::List(items) = &v[3] else { panic!() };
        assert_eq!(items[1], V::Atom("9".into()));
        assert_eq!(flags_of(&items[3]), (crate::store::format::F_SEEN, vec!["$Work".to_string()]));
        assert_eq!(items[4], V::Atom("BODY[]".into()));
        assert_eq!(items[5], V::Str(b"ab\r\nc".to_vec()));
        let v = parse_values(b"* OK [UIDVALIDITY 1796094356] UIDs valid\r\n");
        assert_eq!(v[2], V::List(vec![V::Atom("UIDVALIDITY".into()), V::Atom("1796094356".into())]));
        let (attrs, d, name) = list_line(b"* LIST (\\HasNoChildren \\Sent) \".\" \"Sent Items\"\r\n", b"* LIST ").unwrap();
        assert_eq!((attrs, d, name.as_str()), (vec!["\\HasNoChildren".to_string(), "\\Sent".to_string()], Some('.'), "Sent Items"));
    }

    proptest::proptest! {
        /// A source server's bytes are not trusted: any response parses to
        /// something, without a panic or a loop.
        #[test]
        fn any_response_parses(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_values(&b);
            let _ = list_line(&b, b"* LIST ");
        }

        #[test]
        fn imap_shaped_responses_parse(s in r#"\* [0-9]{1,3} FETCH \((UID [0-9]{1,5} |FLAGS \([\\$a-zA-Z ]{0,20}\) |BODY\[\] \{[0-9]{1,2}\}\r\n|[\[\]()"{} a-z0-9]{0,10})*\)?\r\n"#) {
            let _ = parse_values(s.as_bytes());
        }
    }

    #[test]
    fn internal_dates_and_uid_sets() {
        assert_eq!(parse_internal_date("27-Nov-2026 13:00:00 +0100"), Some(1_795_780_800));
        assert_eq!(parse_internal_date(" 7-Jan-1970 00:00:00 +0000"), Some(6 * 86400));
        assert_eq!(uid_sets(&[1, 2, 3, 5, 7, 8], 100), ["1:3,5,7:8"]);
        assert_eq!(uid_sets(&[1, 2, 3], 2), ["1:2", "3"]);
    }
}
