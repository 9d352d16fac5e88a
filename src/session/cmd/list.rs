//! LIST (RFC 9051 6.3.9 with LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
//! SPECIAL-USE RFC 6154, CHILDREN RFC 3348) and LSUB (RFC 3501 6.3.9).

use std::collections::BTreeSet;

use super::status::status_line;
use super::{bad, ok, Directive, Session};
use crate::proto::{ListArgs, Mailbox, Out};
use crate::store::DELIMITER;

/// `*` matches anything, `%` anything but the hierarchy delimiter.
pub(crate) fn wildmat(pattern: &[u8], name: &[u8]) -> bool {
    // dp[j]: pattern[..i] matches name[..j].
    let mut dp = vec![false; name.len() + 1];
    dp[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            b'%' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= dp[j];
                    next[j] = any;
                    if j < name.len() && name[j] == DELIMITER as u8 {
                        any = false;
                    }
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = dp[j - 1] && name[j - 1] == c;
                }
            }
        }
        dp = next;
    }
    dp[name.len()]
}

/// Reference and pattern joined, with an `INBOX` prefix in canonical case
/// (INBOX is case-insensitive, RFC 9051 5.1).
fn full_pattern(reference: &str, pattern: &str) -> String {
    let mut p = format!("{reference}{pattern}");
    if p.len() >= 5 && p[..5].eq_ignore_ascii_case("INBOX") && (p.len() == 5 || p.as_bytes()[5] == DELIMITER as u8) {
        p.replace_range(..5, "INBOX");
    }
    p
}

fn write_line(out: &mut Out, verb: &str, attrs: &[&str], name: &str, utf8: bool, childinfo: bool) {
    out.raw(b"* ").str(verb).raw(b" (").str(&attrs.join(" ")).raw(b") \"/\" ").mailbox(name, utf8);
    if childinfo {
        out.raw(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    }
    out.crlf();
}

/// No mailbox name is longer than 1,000 octets (`store::manifest`); a
/// longer pattern, whatever its wildcards, is cut so that matching stays
/// cheap (it costs pattern length times name length per mailbox).
const PATTERN_MAX: usize = 4 * 1024;

pub fn run(s: &mut Session, tag: &str, args: &ListArgs, out: &mut Out) -> Directive {
    let utf8 = s.utf8_names();
    let Ok(reference) = s.mailbox_name(&args.reference) else { return bad(out, tag, "Invalid reference name") };
    let mut patterns = Vec::new();
    for p in &args.patterns {
        // A pattern that is not valid modified UTF-7 matches no mailbox
        // name (they all are): answered with nothing, as Dovecot does.
        if let Ok(p) = s.mailbox_name(&Mailbox(p.clone())) {
            if p.len() <= PATTERN_MAX {
                patterns.push(p);
            }
        }
    }
    if patterns.is_empty() {
        return ok(s, out, tag, None, "List completed.", true);
    }
    if patterns.len() == 1 && patterns[0].is_empty() && !args.extended {
        // The delimiter query (RFC 9051 6.3.9).
        out.raw(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return ok(s, out, tag, None, "List completed.", true);
    }
    let store = s.state.authed().expect("authenticated").store().clone();
    let full: Vec<String> = patterns.iter().map(|p| full_pattern(&reference, p)).collect();
    let matches = |name: &str| full.iter().any(|p| wildmat(p.as_bytes(), name.as_bytes()));
    let entries = store.entries();
    let subs = store.subscriptions();
    let show_subscribed = args.select_subscribed || args.return_subscribed;
    for e in &entries {
        if !matches(&e.name) {
            continue;
        }
        let subscribed = subs.contains(&e.name);
        let mut childinfo = false;
        if args.select_subscribed && !subscribed {
            // RFC 5258 4: with RECURSIVEMATCH, a parent of subscribed mailboxes
            // is listed with CHILDINFO, unless those are listed themselves.
            let prefix = format!("{}{DELIMITER}", e.name);
            if args.select_recursive && subs.iter().any(|x| x.starts_with(&prefix) && !matches(x)) {
                childinfo = true;
            } else {
                continue;
            }
        }
        if args.select_special_use && e.special_use.is_none() {
            continue;
        }
        let mut attrs: Vec<&str> = Vec::new();
        if e.noselect {
            attrs.push("\\Noselect");
        }
        attrs.push(if store.has_children(&e.name) { "\\HasChildren" } else { "\\HasNoChildren" });
        if let Some(su) = &e.special_use {
            attrs.push(su);
        }
        if show_subscribed && subscribed {
            attrs.push("\\Subscribed");
        }
        write_line(out, "LIST", &attrs, &e.name, utf8, childinfo);
        if let (Some(items), false) = (&args.return_status, e.noselect) {
            // RFC 5819: the STATUS of each selectable mailbox follows its LIST.
            if let Ok(mb) = store.mailbox(&e.name) {
                status_line(out, &e.name, &mb, items, utf8);
            }
        }
    }
    if args.select_subscribed {
        for n in subs.iter().filter(|n| matches(n) && !entries.iter().any(|e| &e.name == *n)) {
            write_line(out, "LIST", &["\\NonExistent", "\\Subscribed"], n, utf8, false);
        }
    }
    ok(s, out, tag, None, "List completed.", true)
}

/// LSUB (RFC 3501 6.3.9): subscribed names; a parent matched only through
/// `%` is shown with \Noselect.
pub fn lsub(s: &mut Session, tag: &str, reference: &Mailbox, pattern: &[u8], out: &mut Out) -> Directive {
    let utf8 = s.utf8_names();
    let (Ok(reference), Ok(pattern)) = (s.mailbox_name(reference), s.mailbox_name(&Mailbox(pattern.to_vec()))) else {
        return bad(out, tag, "Invalid mailbox name");
    };
    if pattern.is_empty() {
        out.raw(b"* LSUB (\\Noselect) \"/\" \"\"\r\n");
        return ok(s, out, tag, None, "Lsub completed.", true);
    }
    let store = s.state.authed().expect("authenticated").store().clone();
    let full = full_pattern(&reference, &pattern);
    let entries = store.entries();
    let subs = store.subscriptions();
    let mut shown: BTreeSet<String> = BTreeSet::new();
    for n in &subs {
        if wildmat(full.as_bytes(), n.as_bytes()) {
            let exists = entries.iter().any(|e| &e.name == n && !e.noselect);
            write_line(out, "LSUB", if exists { &[] } else { &["\\Noselect"] }, n, utf8, false);
            shown.insert(n.clone());
        }
    }
    // RFC 3501 6.3.9: a subscribed child that `%` does not reach shows its
    // matching parent instead, flagged \Noselect.
    for n in subs.iter().filter(|n| !wildmat(full.as_bytes(), n.as_bytes())) {
        for p in crate::store::manifest::parents(n) {
            if !shown.contains(p) && !subs.contains(p) && wildmat(full.as_bytes(), p.as_bytes()) {
                write_line(out, "LSUB", &["\\Noselect"], p, utf8, false);
                shown.insert(p.to_string());
            }
        }
    }
    ok(s, out, tag, None, "Lsub completed.", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildmat(b"*", b"a/b/c"));
        assert!(wildmat(b"%", b"abc"));
        assert!(!wildmat(b"%", b"a/b"));
        assert!(wildmat(b"a/%", b"a/b"));
        assert!(!wildmat(b"a/%", b"a/b/c"));
        assert!(wildmat(b"a*c", b"a/b/c"));
        assert!(wildmat(b"%/%", b"a/b"));
        assert!(!wildmat(b"INBOX", b"INBOXES"));
        assert_eq!(full_pattern("", "inbox/%"), "INBOX/%");
        assert_eq!(full_pattern("inboxes/", "%"), "inboxes/%");
    }
}
