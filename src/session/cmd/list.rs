//! LIST (RFC 9051 6.3.9 with LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
//! SPECIAL-USE RFC 6154, CHILDREN RFC 3348) and LSUB (RFC 3501 6.3.9),
//! answered in slices under the output budget.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::status::status_line;
use crate::proto::{ListArgs, Mailbox, Out};
use crate::session::reply::{bad, ok};
use crate::session::state::{Authed, Cursor, Directive, Progress, Session, OUTPUT_BUDGET};
use crate::store::manifest::Entry;
use crate::store::{UserStore, DELIMITER};

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

/// What follows a LIST line's name (RFC 5258 `mbox-list-extended`).
enum Extended<'a> {
    None,
    /// `("CHILDINFO" ("SUBSCRIBED"))` (RFC 5258 4).
    ChildInfo,
    /// `("OLDNAME" (name))` after a RENAME (RFC 5465 5.4).
    OldName(&'a str),
}

fn write_line(out: &mut Out, verb: &str, attrs: &[&str], name: &str, utf8: bool, extended: Extended<'_>) {
    out.raw(b"* ").str(verb).raw(b" (").str(&attrs.join(" ")).raw(b") \"/\" ").mailbox(name, utf8);
    match extended {
        Extended::None => {}
        Extended::ChildInfo => {
            out.raw(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        Extended::OldName(old) => {
            out.raw(b" (\"OLDNAME\" (").mailbox(old, utf8).raw(b"))");
        }
    }
    out.crlf();
}

/// A mailbox's LIST attributes: `\Noselect` for a placeholder, whether it
/// has children, its special use, and `\Subscribed` when `subscribed`.
fn attributes(e: &Entry, has_children: bool, subscribed: bool) -> Vec<&str> {
    let mut attrs: Vec<&str> = Vec::new();
    if e.noselect {
        attrs.push("\\Noselect");
    }
    attrs.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
    if let Some(su) = &e.special_use {
        attrs.push(su);
    }
    if subscribed {
        attrs.push("\\Subscribed");
    }
    attrs
}

/// The LIST line NOTIFY sends when a mailbox was created, deleted,
/// renamed (with its old name, RFC 5465 5.4) or (un)subscribed (5.5): its
/// attributes as they are now, `\NonExistent` once it is gone.
pub(crate) fn changed_line(out: &mut Out, store: &UserStore, name: &str, old: Option<&str>, utf8: bool) {
    let subscribed = store.is_subscribed(name);
    let entry = store.entry(name);
    let attrs = match &entry {
        Some(e) => attributes(e, store.has_children(name), subscribed),
        None if subscribed => vec!["\\NonExistent", "\\Subscribed"],
        None => vec!["\\NonExistent"],
    };
    write_line(out, "LIST", &attrs, name, utf8, old.map_or(Extended::None, Extended::OldName));
}

/// No mailbox name is longer than 1,000 octets (`store::manifest`); a
/// longer pattern, whatever its wildcards, is cut so that matching stays
/// cheap (it costs pattern length times name length per mailbox).
const PATTERN_MAX: usize = 4 * 1024;

pub fn run(a: Authed<'_>, tag: &str, args: &ListArgs, out: &mut Out) -> Directive {
    let utf8 = a.cx.utf8_names();
    let Ok(reference) = a.cx.mailbox_name(&args.reference) else { return bad(out, tag, "Invalid reference name") };
    let mut patterns = Vec::new();
    for p in &args.patterns {
        // A pattern that is not valid modified UTF-7 matches no mailbox
        // name (they all are): answered with nothing, as Dovecot does.
        if let Ok(p) = a.cx.mailbox_name(&Mailbox(p.clone())) {
            if p.len() <= PATTERN_MAX {
                patterns.push(p);
            }
        }
    }
    if patterns.is_empty() {
        return ok(tag, None, "List completed.");
    }
    if patterns.len() == 1 && patterns[0].is_empty() && !args.extended {
        // The delimiter query (RFC 9051 6.3.9).
        out.raw(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return ok(tag, None, "List completed.");
    }
    let store = a.user.store.clone();
    let entries = store.entries();
    let mut names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    names.sort_unstable();
    Directive::Run(Box::new(List {
        tag: tag.to_string(),
        args: args.clone(),
        utf8,
        patterns: patterns.iter().map(|p| full_pattern(&reference, p)).collect(),
        subs: store.subscriptions(),
        store,
        entries,
        names,
        next: 0,
        nonexistent_done: false,
    }))
}

/// A LIST in progress: one line (and its STATUS) per mailbox, in slices
/// under the output budget, so a user with a great many mailboxes is
/// answered in pieces.
struct List {
    tag: String,
    args: ListArgs,
    utf8: bool,
    /// Reference and pattern joined.
    patterns: Vec<String>,
    store: Rc<UserStore>,
    /// The mailboxes when the command began (INBOX first), and their
    /// names sorted, to find children by binary search.
    entries: Vec<Entry>,
    names: Vec<String>,
    subs: BTreeSet<String>,
    /// The next entry to consider.
    next: usize,
    /// The subscribed names that do not exist were listed.
    nonexistent_done: bool,
}

impl List {
    fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| wildmat(p.as_bytes(), name.as_bytes()))
    }

    fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{DELIMITER}");
        let i = self.names.partition_point(|n| n.as_str() < prefix.as_str());
        self.names.get(i).is_some_and(|n| n.starts_with(&prefix))
    }

    /// Whether a subscribed mailbox below `name` is not itself listed
    /// (RFC 5258 4: CHILDINFO for its parent).
    fn has_unlisted_subscribed_child(&self, name: &str) -> bool {
        let prefix = format!("{name}{DELIMITER}");
        self.subs.range(prefix.clone()..).take_while(|x| x.starts_with(&prefix)).any(|x| !self.matches(x))
    }

    /// The LIST line of one mailbox, if it is listed.
    fn entry(&self, e: &Entry, out: &mut Out) {
        let args = &self.args;
        if !self.matches(&e.name) {
            return;
        }
        let subscribed = self.subs.contains(&e.name);
        let mut childinfo = false;
        if args.select_subscribed && !subscribed {
            // With RECURSIVEMATCH, a parent of subscribed mailboxes is
            // listed with CHILDINFO, unless those are listed themselves.
            if args.select_recursive && self.has_unlisted_subscribed_child(&e.name) {
                childinfo = true;
            } else {
                return;
            }
        }
        if args.select_special_use && e.special_use.is_none() {
            return;
        }
        let attrs = attributes(e, self.has_children(&e.name), (args.select_subscribed || args.return_subscribed) && subscribed);
        write_line(out, "LIST", &attrs, &e.name, self.utf8, if childinfo { Extended::ChildInfo } else { Extended::None });
        if let (Some(items), false) = (&args.return_status, e.noselect) {
            // RFC 5819: the STATUS of each selectable mailbox follows its LIST.
            if let Ok(mb) = self.store.mailbox(&e.name) {
                status_line(out, &self.store, &e.name, &mb, items, self.utf8);
            }
        }
    }
}

impl Cursor for List {
    fn resume(&mut self, _: &mut Session, out: &mut Out) -> Progress {
        while self.next < self.entries.len() {
            let e = &self.entries[self.next];
            self.entry(e, out);
            self.next += 1;
            if out.len() >= OUTPUT_BUDGET {
                return Progress::More;
            }
        }
        if self.args.select_subscribed && !self.nonexistent_done {
            self.nonexistent_done = true;
            for n in self.subs.iter().filter(|n| self.matches(n) && self.names.binary_search(n).is_err()) {
                write_line(out, "LIST", &["\\NonExistent", "\\Subscribed"], n, self.utf8, Extended::None);
            }
        }
        Progress::Done(ok(&self.tag, None, "List completed."))
    }
}

/// LSUB (RFC 3501 6.3.9): subscribed names; a parent matched only through
/// `%` is shown with \Noselect.
pub fn lsub(a: Authed<'_>, tag: &str, reference: &Mailbox, pattern: &[u8], out: &mut Out) -> Directive {
    let utf8 = a.cx.utf8_names();
    let (Ok(reference), Ok(pattern)) = (a.cx.mailbox_name(reference), a.cx.mailbox_name(&Mailbox(pattern.to_vec()))) else {
        return bad(out, tag, "Invalid mailbox name");
    };
    if pattern.is_empty() {
        out.raw(b"* LSUB (\\Noselect) \"/\" \"\"\r\n");
        return ok(tag, None, "Lsub completed.");
    }
    let store = &a.user.store;
    let full = full_pattern(&reference, &pattern);
    let entries = store.entries();
    let subs = store.subscriptions();
    let mut lines: Vec<(String, bool)> = Vec::new();
    let mut shown: BTreeSet<String> = BTreeSet::new();
    for n in &subs {
        if wildmat(full.as_bytes(), n.as_bytes()) {
            let exists = entries.iter().any(|e| &e.name == n && !e.noselect);
            lines.push((n.clone(), !exists));
            shown.insert(n.clone());
        }
    }
    // RFC 3501 6.3.9: a subscribed child that `%` does not reach shows its
    // matching parent instead, flagged \Noselect.
    for n in subs.iter().filter(|n| !wildmat(full.as_bytes(), n.as_bytes())) {
        for p in crate::store::manifest::parents(n) {
            if !shown.contains(p) && !subs.contains(p) && wildmat(full.as_bytes(), p.as_bytes()) {
                lines.push((p.to_string(), true));
                shown.insert(p.to_string());
            }
        }
    }
    Directive::Run(Box::new(Lsub { tag: tag.to_string(), utf8, lines, next: 0 }))
}

/// An LSUB in progress: its lines, written in slices.
struct Lsub {
    tag: String,
    utf8: bool,
    /// (name, \Noselect)
    lines: Vec<(String, bool)>,
    next: usize,
}

impl Cursor for Lsub {
    fn resume(&mut self, _: &mut Session, out: &mut Out) -> Progress {
        while let Some((name, noselect)) = self.lines.get(self.next) {
            write_line(out, "LSUB", if *noselect { &["\\Noselect"] } else { &[] }, name, self.utf8, Extended::None);
            self.next += 1;
            if out.len() >= OUTPUT_BUDGET {
                return Progress::More;
            }
        }
        Progress::Done(ok(&self.tag, None, "Lsub completed."))
    }
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
