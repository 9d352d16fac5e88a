//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469) names a message or a part of
//! one: `imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l`
//! or the same from the `/` on. Keys are case-insensitive, the mailbox and
//! section percent-encoded (the mailbox in UTF-8, RFC 5092 3.3).
//!
//! URLAUTH (RFC 4467) URLs end in `[;EXPIRE=datetime];URLAUTH=access`, then
//! `:mechanism:token` once authorized: [`parse_authorized`].

/// What a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// The user of an absolute URL's authority, if it names one.
    pub user: Option<String>,
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section as in `BODY[...]`, upper-cased.
    pub section: Option<String>,
    /// PARTIAL: offset and, optionally, length.
    pub partial: Option<(u64, Option<u64>)>,
}

use super::percent::decode as percent_decoded;

/// `text` without a case-insensitive ASCII `prefix`.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// The URL `url` names, or None if it is not one this server resolves.
pub fn parse(url: &str) -> Option<ImapUrl> {
    let (user, path) = match strip_prefix_ci(url, "imap://") {
        Some(rest) => {
            let slash = rest.find('/')?;
            let authority = &rest[..slash];
            let user = match authority.rfind('@') {
                Some(at) => {
                    let info = &authority[..at];
                    Some(percent_decoded(&info[..info.find(';').unwrap_or(info.len())])?)
                }
                None => None,
            };
            (user, &rest[slash + 1..])
        }
        None => (None, url.strip_prefix('/')?),
    };
    let mut segments = path.split("/;");
    let first = segments.next()?;
    let (mailbox, uidvalidity) = match first.to_ascii_uppercase().rfind(";UIDVALIDITY=") {
        Some(at) => (&first[..at], Some(first[at + ";UIDVALIDITY=".len()..].parse().ok()?)),
        None => (first, None),
    };
    let mailbox = percent_decoded(mailbox.strip_suffix('/').unwrap_or(mailbox))?;
    if mailbox.is_empty() {
        return None;
    }
    let mut u = ImapUrl { user, mailbox, uidvalidity, uid: 0, section: None, partial: None };
    for seg in segments {
        let (key, value) = seg.split_once('=')?;
        match key.to_ascii_uppercase().as_str() {
            "UID" if u.uid == 0 && u.section.is_none() && u.partial.is_none() => u.uid = value.parse().ok().filter(|&n| n > 0)?,
            "SECTION" if u.uid != 0 && u.section.is_none() && u.partial.is_none() => u.section = Some(percent_decoded(value)?.to_ascii_uppercase()),
            "PARTIAL" if u.uid != 0 && u.partial.is_none() => {
                u.partial = Some(match value.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok()?)),
                    None => (value.parse().ok()?, None),
                });
            }
            _ => return None,
        }
    }
    (u.uid != 0).then_some(u)
}

/// Who may fetch a URLAUTH URL (RFC 4467 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `user+name`: that user only.
    User(String),
    /// `submit+name`: a submission server for that user.
    Submit(String),
    /// `authuser`: any user logged in to this server.
    AuthUser,
    /// `anonymous`: anyone.
    Anonymous,
}

/// A URLAUTH URL (RFC 4467 3): what it names, and its authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub url: ImapUrl,
    /// The URL up to and including the access identifier (the "rump"
    /// the token is computed over).
    pub rump: String,
    /// `;EXPIRE=`: no use after this time (seconds since the epoch).
    pub expire: Option<i64>,
    pub access: Access,
    /// `:mechanism:token`, when the URL is authorized.
    pub token: Option<(String, String)>,
}

/// A URLAUTH URL, or None if `url` is not one (an absolute URL with a
/// user, a message by UID, and `;URLAUTH=`).
pub fn parse_authorized(url: &str) -> Option<Authorized> {
    let at = url.to_ascii_uppercase().rfind(";URLAUTH=")?;
    let tail = &url[at + ";URLAUTH=".len()..];
    let (access_text, token) = match tail.split_once(':') {
        Some((a, rest)) => {
            let (mech, token) = rest.split_once(':')?;
            (a, Some((mech.to_ascii_uppercase(), token.to_ascii_lowercase())))
        }
        None => (tail, None),
    };
    let access = match access_text.to_ascii_lowercase().as_str() {
        "authuser" => Access::AuthUser,
        "anonymous" => Access::Anonymous,
        a => match a.split_once('+') {
            Some(("user", _)) => Access::User(percent_decoded(&access_text[5..])?),
            Some(("submit", _)) => Access::Submit(percent_decoded(&access_text[7..])?),
            _ => return None,
        },
    };
    let rump = url[..at + ";URLAUTH=".len() + access_text.len()].to_string();
    let mut head = &url[..at];
    let mut expire = None;
    if let Some(e) = head.to_ascii_uppercase().rfind(";EXPIRE=") {
        expire = Some(parse_datetime(&head[e + ";EXPIRE=".len()..])?);
        head = &head[..e];
    }
    let u = parse(head)?;
    u.user.as_ref()?;
    Some(Authorized { url: u, rump, expire, access, token })
}

/// An RFC 3339 date-time (`2026-11-30T12:00:00Z`, fractions and offsets
/// allowed) as seconds since the epoch.
fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let v = rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    Some(super::command::days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlauth_urls_rfc4467_examples() {
        let a = parse_authorized("imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred").unwrap();
        assert_eq!(a.rump, "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred");
        assert_eq!((a.url.uid, a.url.section.as_deref(), a.access, a.token), (20, Some("1.2"), Access::Submit("fred".into()), None));
        let a = parse_authorized(
            "imap://joe@example.com/INBOX/;uid=20;expire=2026-11-30T12:00:00+01:00;urlauth=user+fred:internal:91354a473744909de610943775f92038",
        )
        .unwrap();
        assert_eq!(a.expire, Some(1_796_036_400), "11:00 UTC");
        assert_eq!(a.access, Access::User("fred".into()));
        assert_eq!(a.token, Some(("INTERNAL".into(), "91354a473744909de610943775f92038".into())));
        assert_eq!(a.rump, "imap://joe@example.com/INBOX/;uid=20;expire=2026-11-30T12:00:00+01:00;urlauth=user+fred");
        assert_eq!(parse_authorized("imap://joe@example.com/INBOX/;uid=20;urlauth=authuser").unwrap().access, Access::AuthUser);
        // No user, no UID, an unknown access or a bad date: not a URLAUTH URL.
        assert!(parse_authorized("/INBOX/;uid=20;urlauth=authuser").is_none());
        assert!(parse_authorized("imap://joe@example.com/INBOX;urlauth=authuser").is_none());
        assert!(parse_authorized("imap://joe@example.com/INBOX/;uid=20;urlauth=someone").is_none());
        assert!(parse_authorized("imap://joe@example.com/INBOX/;uid=20;expire=tomorrow;urlauth=authuser").is_none());
    }

    #[test]
    fn relative_and_absolute_urls() {
        let u = parse("/INBOX;UIDVALIDITY=785799047/;UID=113330/;section=1.5.9").unwrap();
        assert_eq!((u.mailbox.as_str(), u.uidvalidity, u.uid, u.section.as_deref()), ("INBOX", Some(785799047), 113330, Some("1.5.9")));
        let u = parse("imap://joe;AUTH=*@example.com/Drafts%20old/;uid=20/;section=HEADER/;partial=10.5").unwrap();
        assert_eq!(u.user.as_deref(), Some("joe"));
        assert_eq!((u.mailbox.as_str(), u.uid, u.section.as_deref(), u.partial), ("Drafts old", 20, Some("HEADER"), Some((10, Some(5)))));
        let u = parse("/box/;uid=2").unwrap();
        assert_eq!((u.mailbox.as_str(), u.uidvalidity, u.section, u.partial), ("box", None, None, None));
        assert_eq!(parse("/b%C3%A4r/;UID=1").unwrap().mailbox, "bär");
    }

    #[test]
    fn what_is_not_a_message_url_is_refused() {
        for bad in [
            "",
            "INBOX/;UID=1",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=x/;UID=1",
            "/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z",
            "/INBOX/;UID=1/;URLAUTH=anonymous",
            "/INBOX/;SECTION=1/;UID=1",
            "/INBOX/;UID=1/;PARTIAL=1.x",
            "/IN%ZZBOX/;UID=1",
            "imap://host",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
