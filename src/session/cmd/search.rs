//! SEARCH and UID SEARCH (RFC 9051 6.4.4, ESEARCH RFC 4731, SEARCHRES
//! RFC 5182, CONDSTORE MODSEQ RFC 7162). Matching is in `session::search`.

use super::{no, ok, uid_set, Directive, Session, State};
use crate::proto::{Out, SearchKey, SearchReturn};
use crate::session::search::{uses_modseq, Matcher};

pub fn run(s: &mut Session, tag: &str, ret: Option<&[SearchReturn]>, charset: Option<&str>, key: &SearchKey, uid: bool, out: &mut Out) -> Directive {
    if let Some(cs) = charset {
        if !matches!(cs, "UTF-8" | "US-ASCII") {
            return no(out, tag, Some("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
        }
    }
    let rev2 = s.enabled.rev2;
    let with_modseq = uses_modseq(key);
    if with_modseq {
        s.enabled.condstore = true;
    }
    // RFC 9051 7.5.1: UID commands may carry EXPUNGE responses, so the
    // session catches up first and UIDs resolve against the mailbox as it is.
    if uid && !super::sync(s, out, true) {
        return Directive::Return(super::Step::Close);
    }
    let State::Selected(_, sel) = &mut s.state else { unreachable!("state checked by dispatch") };
    let (hits, max_modseq, expunged) = {
        let mb = sel.mbox.borrow();
        let matcher = Matcher::new(&mb, sel);
        let mut hits: Vec<(u32, u32)> = Vec::new();
        let mut max_modseq = 0;
        let mut expunged = false;
        for (i, &u) in sel.uids().iter().enumerate() {
            let Some(m) = mb.find(u) else {
                expunged = true;
                continue;
            };
            if matcher.matches(key, m, i as u32 + 1) {
                hits.push((i as u32 + 1, u));
                max_modseq = max_modseq.max(m.modseq);
            }
        }
        (hits, max_modseq, expunged)
    };
    let opts: Vec<SearchReturn> = match ret {
        Some([]) | None => vec![SearchReturn::All],
        Some(r) => r.to_vec(),
    };
    if opts.contains(&SearchReturn::Save) {
        sel.saved = hits.iter().map(|&(_, u)| u).collect();
    }
    let numbers: Vec<u32> = hits.iter().map(|&(seq, u)| if uid { u } else { seq }).collect();
    if ret.is_some() || rev2 {
        // ESEARCH (RFC 4731); SAVE alone returns nothing (RFC 5182 2.1).
        if !(opts.len() == 1 && opts[0] == SearchReturn::Save) {
            out.raw(b"* ESEARCH (TAG ").string(tag.as_bytes(), false).raw(b")");
            if uid {
                out.raw(b" UID");
            }
            for o in &opts {
                match o {
                    SearchReturn::Min if !numbers.is_empty() => {
                        out.raw(b" MIN ").num(u64::from(numbers[0]));
                    }
                    SearchReturn::Max if !numbers.is_empty() => {
                        out.raw(b" MAX ").num(u64::from(*numbers.last().expect("non-empty")));
                    }
                    SearchReturn::All if !numbers.is_empty() => {
                        out.raw(b" ALL ").str(&uid_set(&numbers));
                    }
                    SearchReturn::Count => {
                        out.raw(b" COUNT ").num(numbers.len() as u64);
                    }
                    _ => {}
                }
            }
            if with_modseq && !numbers.is_empty() {
                out.raw(b" MODSEQ ").num(max_modseq);
            }
            out.crlf();
        }
    } else {
        out.raw(b"* SEARCH");
        for n in &numbers {
            out.sp().num(u64::from(*n));
        }
        if with_modseq && !numbers.is_empty() {
            out.raw(b" (MODSEQ ").num(max_modseq).raw(b")");
        }
        out.crlf();
    }
    // RFC 9051 7.1: the client learns that another session expunged
    // messages it still numbers, and may want to NOOP.
    let code = expunged.then_some("EXPUNGEISSUED");
    ok(s, out, tag, code, "Search completed.", uid)
}
