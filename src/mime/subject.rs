//! The base subject (RFC 5256 section 2.1): the Subject with its reply
//! and forward markers, blobs and trailers taken off, for SORT (SUBJECT)
//! and for threading. Also says whether anything removed marked a reply
//! or a forward (the REFERENCES algorithm needs that).

/// (base subject, is a reply or forward) of a decoded Subject value.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // (1) Tabs and line breaks to spaces, runs of spaces to one.
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') { ' ' } else { c };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut reply = false;
    let mut t: &str = &s;
    loop {
        // (2) Trailers: "(fwd)" and spaces at the end.
        loop {
            if let Some(rest) = t.strip_suffix(' ') {
                t = rest;
            } else if t.len() >= 5 && t.is_char_boundary(t.len() - 5) && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)") {
                t = &t[..t.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // (3)-(5) Leaders, and blobs that leave something behind.
        loop {
            if let Some(n) = leader(t.as_bytes()) {
                reply |= n.1;
                t = &t[n.0..];
                continue;
            }
            if let Some(n) = blob(t.as_bytes(), 0) {
                if !t[n..].is_empty() {
                    t = &t[n..];
                    continue;
                }
            }
            break;
        }
        // (6) "[fwd: ...]" around everything: unwrap, and again from (2).
        let b = t.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b[b.len() - 1] == b']' {
            t = &t[5..t.len() - 1];
            reply = true;
            continue;
        }
        return (t.to_string(), reply);
    }
}

/// A subj-blob at `at`: `[` *BLOBCHAR `]` *WSP; where it ends.
fn blob(b: &[u8], at: usize) -> Option<usize> {
    if b.get(at) != Some(&b'[') {
        return None;
    }
    let close = at + 1 + b[at + 1..].iter().position(|&c| c == b']' || c == b'[')?;
    if b[close] != b']' {
        return None;
    }
    let mut end = close + 1;
    while b.get(end) == Some(&b' ') {
        end += 1;
    }
    Some(end)
}

/// A subj-leader at the start: (length, whether it was a reply/forward
/// marker). subj-leader = (*subj-blob subj-refwd) / WSP.
fn leader(b: &[u8]) -> Option<(usize, bool)> {
    if b.first() == Some(&b' ') {
        return Some((1, false));
    }
    let mut at = 0;
    while let Some(end) = blob(b, at) {
        at = end;
    }
    // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    let word = if b.len() >= at + 3 && b[at..at + 3].eq_ignore_ascii_case(b"fwd") {
        3
    } else if b.len() >= at + 2 && (b[at..at + 2].eq_ignore_ascii_case(b"re") || b[at..at + 2].eq_ignore_ascii_case(b"fw")) {
        2
    } else {
        return None;
    };
    at += word;
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    if let Some(end) = blob(b, at) {
        at = end;
    }
    (b.get(at) == Some(&b':')).then_some((at + 1, true))
}

#[cfg(test)]
mod tests {
    use super::base_subject;

    fn base(s: &str) -> String {
        base_subject(s).0
    }

    #[test]
    fn rfc_5256_section_2_1() {
        assert_eq!(base_subject("Re: hello"), ("hello".to_string(), true));
        assert_eq!(base_subject("hello"), ("hello".to_string(), false));
        assert_eq!(base("RE:   Re: re[2]: hello"), "hello");
        assert_eq!(base("Fwd: hello"), "hello");
        assert_eq!(base("fw: hello (fwd)"), "hello");
        assert!(base_subject("hello (fwd) (FWD)  ").1);
        assert_eq!(base("[PATCH] fix the thing"), "fix the thing");
        assert_eq!(base("Re: [list] [PATCH 2/3] Re: fix"), "fix");
        // A blob that would leave nothing is the subject.
        assert_eq!(base("[only a blob]"), "[only a blob]");
        assert_eq!(base("Re: [only a blob]"), "[only a blob]");
        assert_eq!(base_subject("[Fwd: original subject]"), ("original subject".to_string(), true));
        assert_eq!(base("[fwd: Re: [fwd: deep]]"), "deep");
        assert_eq!(base("  spaced \t out\r\n  subject  "), "spaced out subject");
        assert_eq!(base("Reply to this"), "Reply to this", "'re' without a colon is a word");
        assert_eq!(base("Re:"), "");
        assert_eq!(base(""), "");
        assert_eq!(base("Réunion: ça va"), "Réunion: ça va");
        // Unbalanced brackets are no blob.
        assert_eq!(base("[unclosed hello"), "[unclosed hello");
        assert_eq!(base("Re[: hello"), "Re[: hello");
    }
}
