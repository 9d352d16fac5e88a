//! RFC 5322 address lists, parsed into the IMAP address structure
//! `(name adl mailbox host)` of ENVELOPE (RFC 9051 7.5.2).
//!
//! Names stay raw (encoded words are not decoded, as IMAP requires). Broken
//! input yields what Dovecot yields: `MISSING_MAILBOX` / `MISSING_DOMAIN`
//! placeholders rather than an error, and a trailing comment becomes the
//! name of an address that has none.

use std::borrow::Cow;

/// The comment opening at `v[open]` (a `(`), with the comments nested in it
/// and its quoted pairs: where its text ends (its closing parenthesis, or
/// the end of `v` when it is never closed) and where what follows begins.
pub(crate) fn comment_end(v: &[u8], open: usize) -> (usize, usize) {
    let mut depth = 0;
    let mut i = open;
    while i < v.len() {
        match v[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (i, i + 1);
                }
            }
            b'\\' if i + 1 < v.len() => i += 1,
            _ => {}
        }
        i += 1;
    }
    (v.len(), v.len())
}

/// One address; its parts borrowed from the header value where they
/// appear in it whole (most do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Addr<'a> {
    pub name: Option<Bytes<'a>>,
    pub adl: Option<Bytes<'a>>,
    pub mailbox: Option<Bytes<'a>>,
    pub host: Option<Bytes<'a>>,
}

pub type Bytes<'a> = Cow<'a, [u8]>;

impl Addr<'_> {
    /// The same address, owning its parts.
    pub fn into_owned(self) -> Addr<'static> {
        let own = |b: Option<Bytes<'_>>| b.map(|b| Cow::Owned(b.into_owned()));
        Addr { name: own(self.name), adl: own(self.adl), mailbox: own(self.mailbox), host: own(self.host) }
    }
}

impl<'a> Addr<'a> {
    fn group_start(name: Bytes<'a>) -> Addr<'a> {
        Addr { mailbox: Some(name), ..Default::default() }
    }

    fn group_end() -> Addr<'a> {
        Addr::default()
    }
}

/// A token, borrowed from the header value unless unescaping changed it
/// (a header with 100,000 addresses is a few hundred thousand tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    /// An atom or dot-atom run.
    Atom(&'a [u8]),
    /// A quoted string, quotes and escapes removed.
    Quoted(Cow<'a, [u8]>),
    Comment(Cow<'a, [u8]>),
    /// `[...]`, kept whole.
    Literal(&'a [u8]),
    Special(u8),
}

/// `v[start..end]` without the escapes (`\x` -> `x`) and line breaks of a
/// quoted string or comment; borrowed when there are none.
fn unescaped(v: &[u8], start: usize, end: usize) -> Cow<'_, [u8]> {
    let raw = &v[start..end];
    if !raw.iter().any(|&b| matches!(b, b'\\' | b'\r' | b'\n')) {
        return Cow::Borrowed(raw);
    }
    let mut s = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            i += 1;
        }
        if raw[i] != b'\r' && raw[i] != b'\n' {
            s.push(raw[i]);
        }
        i += 1;
    }
    Cow::Owned(s)
}

/// The tokens of `v`; with `first_only`, only up to the first comma
/// outside `<...>` (enough for the first address).
fn tokenize(v: &[u8], first_only: bool) -> Vec<Tok<'_>> {
    let mut t = Vec::new();
    let mut i = 0;
    let mut angle = 0usize;
    while i < v.len() {
        let b = v[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                i += 1;
                let start = i;
                while i < v.len() && v[i] != b'"' {
                    if v[i] == b'\\' && i + 1 < v.len() {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= v.len() {
                    // Unterminated: the whole rest is garbage.
                    t.push(Tok::Special(0));
                    return t;
                }
                t.push(Tok::Quoted(unescaped(v, start, i)));
                i += 1;
            }
            b'(' => {
                // Nested comments are kept inside the outer one's text.
                let start = i + 1;
                let (end, next) = comment_end(v, i);
                i = next;
                t.push(Tok::Comment(unescaped(v, start.min(end), end)));
            }
            b'[' => {
                let end = v[i..].iter().position(|&c| c == b']').map_or(v.len(), |p| i + p + 1);
                t.push(Tok::Literal(&v[i..end]));
                i = end;
            }
            b'<' | b'>' | b':' | b';' | b'@' | b',' => {
                match b {
                    b'<' => angle += 1,
                    b'>' => angle = angle.saturating_sub(1),
                    b',' if first_only && angle == 0 => return t,
                    _ => {}
                }
                t.push(Tok::Special(b));
                i += 1;
            }
            _ => {
                let start = i;
                while i < v.len() && !matches!(v[i], b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'(' | b')' | b'<' | b'>' | b':' | b';' | b'@' | b',' | b'[' | b']')
                {
                    i += 1;
                }
                if i == start {
                    // A stray ')' or ']'.
                    i += 1;
                    continue;
                }
                t.push(Tok::Atom(&v[start..i]));
            }
        }
    }
    t
}

const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

fn missing() -> Addr<'static> {
    Addr { mailbox: Some(Cow::Borrowed(MISSING_MAILBOX)), host: Some(Cow::Borrowed(MISSING_DOMAIN)), ..Default::default() }
}

/// Words of a phrase joined by single spaces (borrowed when it is one word).
fn phrase<'a>(words: &[Tok<'a>]) -> Option<Bytes<'a>> {
    let mut words = words.iter().filter_map(|w| match w {
        Tok::Atom(s) => Some(Cow::Borrowed(*s)),
        Tok::Quoted(q) => Some(q.clone()),
        _ => None,
    });
    let first = words.next()?;
    let Some(second) = words.next() else { return Some(first).filter(|p| !p.is_empty()) };
    let mut out = first.into_owned();
    for w in std::iter::once(second).chain(words) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(&w);
    }
    (!out.is_empty()).then_some(Cow::Owned(out))
}

/// The text of the tokens of a local part or domain (quoted strings
/// keep their quotes in a local part); borrowed when it is one token.
fn spec_text<'a>(ts: &[Tok<'a>], quote: bool) -> Option<Bytes<'a>> {
    let mut parts = ts.iter().filter(|t| matches!(t, Tok::Atom(_) | Tok::Literal(_) | Tok::Quoted(_)));
    let first = parts.next()?;
    let single = parts.next().is_none();
    match first {
        Tok::Atom(a) | Tok::Literal(a) if single => return Some(Cow::Borrowed(*a)).filter(|a| !a.is_empty()),
        Tok::Quoted(q) if single && !quote => return Some(q.clone()).filter(|q| !q.is_empty()),
        _ => {}
    }
    let mut s = Vec::new();
    for t in ts {
        match t {
            Tok::Atom(a) | Tok::Literal(a) => s.extend_from_slice(a),
            Tok::Quoted(q) if quote => {
                s.push(b'"');
                s.extend_from_slice(q);
                s.push(b'"');
            }
            Tok::Quoted(q) => s.extend_from_slice(q),
            _ => {}
        }
    }
    (!s.is_empty()).then_some(Cow::Owned(s))
}

/// `local@domain` from tokens; missing parts become placeholders.
fn addr_spec<'a>(toks: &[Tok<'a>]) -> (Option<Bytes<'a>>, Option<Bytes<'a>>) {
    match toks.iter().position(|t| *t == Tok::Special(b'@')) {
        Some(p) => (spec_text(&toks[..p], true), spec_text(&toks[p + 1..], false)),
        None => (spec_text(toks, true), None),
    }
}

/// One mailbox (no groups): name-addr or addr-spec.
fn mailbox<'a>(toks: &[Tok<'a>]) -> Addr<'a> {
    let last_comment = toks.iter().rev().find_map(|t| if let Tok::Comment(c) = t { Some(c.clone()) } else { None });
    // Most addresses have no comment: then the tokens are used as they are.
    let toks: Cow<'_, [Tok<'a>]> =
        if last_comment.is_none() { Cow::Borrowed(toks) } else { Cow::Owned(toks.iter().filter(|t| !matches!(t, Tok::Comment(_))).cloned().collect()) };
    if toks.is_empty() || toks.contains(&Tok::Special(0)) {
        return missing();
    }
    let placeholders = |mb: Option<Bytes<'a>>, host: Option<Bytes<'a>>| {
        (Some(mb.unwrap_or(Cow::Borrowed(MISSING_MAILBOX))), Some(host.unwrap_or(Cow::Borrowed(MISSING_DOMAIN))))
    };
    if let Some(lt) = toks.iter().position(|t| *t == Tok::Special(b'<')) {
        let gt = toks.iter().rposition(|t| *t == Tok::Special(b'>')).filter(|&g| g > lt).unwrap_or(toks.len());
        let mut inner = &toks[lt + 1..gt];
        let mut adl = None;
        if let Some(colon) = inner.iter().position(|t| *t == Tok::Special(b':')) {
            let mut route = Vec::new();
            for t in &inner[..colon] {
                match t {
                    Tok::Atom(a) | Tok::Literal(a) => route.extend_from_slice(a),
                    Tok::Special(c) => route.push(*c),
                    _ => {}
                }
            }
            adl = (!route.is_empty()).then_some(Cow::Owned(route));
            inner = &inner[colon + 1..];
        }
        let (mb, host) = addr_spec(inner);
        let name = phrase(&toks[..lt]).or(last_comment);
        let (mailbox, host) = placeholders(mb, host);
        return Addr { name, adl, mailbox, host };
    }
    let (mb, host) = addr_spec(&toks);
    if mb.is_none() && host.is_none() {
        return missing();
    }
    let (mailbox, host) = placeholders(mb, host);
    Addr { name: last_comment.filter(|c| !c.is_empty()), adl: None, mailbox, host }
}

/// Splits tokens at top-level commas (not inside `<...>`).
fn split_commas<'t, 'a>(toks: &'t [Tok<'a>]) -> Vec<&'t [Tok<'a>]> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Special(b'<') => depth += 1,
            Tok::Special(b'>') => depth = (depth - 1).max(0),
            Tok::Special(b',') if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}

/// Parses an address-list header value into IMAP addresses (groups become
/// start and end markers, RFC 9051 7.5.2). Linear in the length of the
/// value: every token is looked at a bounded number of times (a header
/// with 100,000 addresses once took 53 s).
pub fn parse_list(value: &[u8]) -> Vec<Addr<'_>> {
    parse_tokens(&tokenize(value, false))
}

/// The first address of a list (a group's start for a group), reading no
/// further than it: SORT's keys need only that, whatever the list's size.
pub fn first(value: &[u8]) -> Option<Addr<'_>> {
    parse_tokens(&tokenize(value, true)).into_iter().next()
}

fn parse_tokens<'a>(toks: &[Tok<'a>]) -> Vec<Addr<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        // The item runs to the next top-level comma; it is a group if a
        // colon comes first, outside any <...>.
        let mut j = i;
        let mut depth = 0i32;
        let mut seen_angle = false;
        let mut colon = None;
        while j < toks.len() {
            match toks[j] {
                Tok::Special(b'<') => {
                    depth += 1;
                    seen_angle = true;
                }
                Tok::Special(b'>') => depth = (depth - 1).max(0),
                Tok::Special(b':') if depth == 0 && !seen_angle => {
                    colon = Some(j);
                    break;
                }
                Tok::Special(b',') if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if let Some(c) = colon {
            // Group: phrase ':' members ';'.
            let name = phrase(&toks[i..c]).unwrap_or_default();
            let members_start = c + 1;
            let semi = toks[members_start..].iter().position(|t| *t == Tok::Special(b';')).map_or(toks.len(), |p| members_start + p);
            out.push(Addr::group_start(name));
            for m in split_commas(&toks[members_start..semi]) {
                if !m.iter().all(|t| matches!(t, Tok::Comment(_))) {
                    out.push(mailbox(m));
                }
            }
            out.push(Addr::group_end());
            i = semi + 1;
            // Skip the comma separating this group from what follows.
            if toks.get(i) == Some(&Tok::Special(b',')) {
                i += 1;
            }
            continue;
        }
        let part = &toks[i..j];
        let only_comments = part.iter().all(|t| matches!(t, Tok::Comment(_)));
        if !only_comments || (part.is_empty() && j < toks.len()) {
            out.push(mailbox(part));
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: Option<&'static str>, mb: Option<&'static str>, host: Option<&'static str>) -> Addr<'static> {
        let b = |s: Option<&'static str>| s.map(|s| Cow::Borrowed(s.as_bytes()));
        Addr { name: b(name), adl: None, mailbox: b(mb), host: b(host) }
    }

    #[test]
    fn dovecot_shapes() {
        assert_eq!(
            parse_list(br#""Fred Foobar" <foobar@Blurdybloop.COM>, =?utf-8?q?J=C3=B6rg?= <j@x.de>"#),
            vec![a(Some("Fred Foobar"), Some("foobar"), Some("Blurdybloop.COM")), a(Some("=?utf-8?q?J=C3=B6rg?="), Some("j"), Some("x.de"))]
        );
        assert_eq!(
            parse_list(br#"undisclosed-recipients:;, Group: a@b.c, "q" <d@e.f>;"#),
            vec![
                a(None, Some("undisclosed-recipients"), None),
                Addr::default(),
                a(None, Some("Group"), None),
                a(None, Some("a"), Some("b.c")),
                a(Some("q"), Some("d"), Some("e.f")),
                Addr::default()
            ]
        );
        assert_eq!(parse_list(b"<bare@x.y>, (comment) x@y (Name)"), vec![a(None, Some("bare"), Some("x.y")), a(Some("Name"), Some("x"), Some("y"))]);
        assert_eq!(parse_list(br#""unterminated <a@b>"#), vec![missing()]);
        assert_eq!(parse_list(b"a@b, , c@d"), vec![a(None, Some("a"), Some("b")), missing(), a(None, Some("c"), Some("d"))]);
        assert_eq!(parse_list(b"Joe Q. Public <john.q.public@example.com>"), vec![a(Some("Joe Q. Public"), Some("john.q.public"), Some("example.com"))]);
        assert_eq!(parse_list(b"<@route,@r2:x@y>")[0].adl.as_deref(), Some(&b"@route,@r2"[..]));
        assert_eq!(parse_list(b"a@b,"), vec![a(None, Some("a"), Some("b"))]);
    }

    #[test]
    fn the_first_address_alone() {
        for v in [&b"\"Smith, J\" <j@x.org>, b@y.org"[..], b"(a, comment) j@x.org, b@y", b"G: a@b, c@d;, e@f", b"<@r1,@r2:j@x.org>, k@y", b""] {
            assert_eq!(first(v), parse_list(v).into_iter().next(), "{}", String::from_utf8_lossy(v));
        }
    }

    /// 100,000 addresses: linear, not quadratic (hardening issue: 53 s).
    #[test]
    fn a_huge_list_is_parsed_in_linear_time() {
        let mut v = Vec::new();
        for i in 0..100_000 {
            v.extend_from_slice(format!("User {i} <user{i}@example.com>, ").as_bytes());
        }
        let list = parse_list(&v);
        assert_eq!(list.len(), 100_000);
        assert_eq!(list[99_999], a(Some("User 99999"), Some("user99999"), Some("example.com")));
    }
}
