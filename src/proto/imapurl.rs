//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469) names a message or a part of
//! one: `imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l`
//! or the same from the `/` on. Keys are case-insensitive, the mailbox and
//! section percent-encoded (the mailbox in UTF-8, RFC 5092 3.3). URLAUTH
//! forms (`;EXPIRE=`, `;URLAUTH=`) are not accepted.

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

#[cfg(test)]
mod tests {
    use super::*;

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
