//! Message IDs for threading (RFC 5256 REFERENCES, RFC 5322 3.6.4): the
//! IDs in a Message-ID, In-Reply-To or References value, normalized so
//! that `<"a b"@x>` and `<a b@x>`... are one ID: quoting, comments and
//! white space removed, the angle brackets dropped. An ID without `@` is
//! not valid and is skipped, as Dovecot does.

/// The valid IDs in a header value, in order.
pub fn ids(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = value[i..].iter().position(|&b| b == b'<') {
        let start = i + p + 1;
        let Some(q) = value[start..].iter().position(|&b| b == b'>') else { break };
        let end = start + q;
        if let Some(id) = normalize(&value[start..end]) {
            out.push(id);
        }
        i = end + 1;
    }
    out
}

/// The first valid ID of a value.
pub fn first(value: &[u8]) -> Option<String> {
    ids(value).into_iter().next()
}

/// The inside of `<...>`: quotes, backslash escapes, comments and white
/// space removed. None unless it is `left@right` with both sides present.
fn normalize(inner: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(inner.len());
    let mut quoted = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        match b {
            b'\\' if i + 1 < inner.len() => {
                i += 1;
                if depth == 0 {
                    out.push(inner[i]);
                }
            }
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' if !quoted => {}
            _ if depth > 0 => {}
            _ => out.push(b),
        }
        i += 1;
    }
    let at = out.iter().rposition(|&b| b == b'@')?;
    if at == 0 || at + 1 == out.len() {
        return None;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_does_not_make_another_id() {
        // The example of RFC 5256 (REFERENCES).
        assert_eq!(ids(br#"<"01KF8JCEOCBS0045PS"@xxx.yyy.com>"#), ids(b"<01KF8JCEOCBS0045PS@xxx.yyy.com>"));
        assert_eq!(ids(b"<a@b> <c@d>\r\n <e (comment) @f>"), vec!["a@b", "c@d", "e@f"]);
        assert_eq!(ids(b"<no-at-sign> <@x> <x@> <ok@x>"), vec!["ok@x"]);
        assert_eq!(first(b"Your message of Monday <m1@x.org> and <m2@x.org>"), Some("m1@x.org".to_string()));
        assert_eq!(first(b"<unterminated@x"), None);
        assert_eq!(ids(b""), Vec::<String>::new());
    }
}
