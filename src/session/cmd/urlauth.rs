//! URLAUTH (RFC 4467): GENURLAUTH, RESETKEY and URLFETCH, with
//! URLAUTH=BINARY (RFC 5524).
//!
//! A URL is authorized with the INTERNAL mechanism: its token is an
//! HMAC-SHA-256 of the URL up to its access identifier (the "rump") under
//! a random key kept for the mailbox in its owner's list of mailboxes
//! (made at the first GENURLAUTH, forgotten by RESETKEY or DELETE), so a
//! token cannot be forged or carried to another URL, and RESETKEY
//! revokes every URL of the mailbox at once. Another user's URL is read
//! from their store: the one open on this worker, else theirs on disk,
//! read-only.

use std::rc::Rc;

use hmac::{Hmac, Mac};

use super::fetch::{url_data, with_cache, Data};
use crate::auth::passwd::normalize_user_name;
use crate::mime::structure::analyze;
use crate::mime::{decoded_leaves, header, Kind, Transfer};
use crate::proto::imapurl::{parse_authorized, Access, Authorized};
use crate::proto::parse::parse_url_section;
use crate::proto::{Mailbox, Out, UrlFetchItem};
use crate::session::reply::{bad, no, ok, ok_when_durable};
use crate::session::state::{Authed, Directive};
use crate::store::manifest::canonical;
use crate::store::{MailboxRef, Msg, UserStore};

/// The one mechanism (RFC 4467 7: every server has INTERNAL).
const INTERNAL: &str = "INTERNAL";

/// The token of `rump` under `key`, in lower-case hex.
fn token(key: &[u8; 32], rump: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(rump.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The id of the selectable mailbox `name` in `store`.
fn mailbox_id(store: &UserStore, name: &str) -> Option<u32> {
    store.entry(&canonical(name).ok()?).filter(|e| !e.noselect).map(|e| e.id)
}

/// GENURLAUTH (RFC 4467 6.1): each URL, with its token. Only the user's
/// own mailboxes can be shared.
pub fn generate(a: Authed<'_>, tag: &str, urls: &[(String, String)], out: &mut Out) -> Directive {
    let store = &a.user.store;
    let mut full = Vec::with_capacity(urls.len());
    for (url, mechanism) in urls {
        if mechanism != INTERNAL {
            return no(out, tag, None, "Unsupported URLAUTH mechanism");
        }
        let Some(au) = parse_authorized(url) else { return bad(out, tag, "Invalid URLAUTH URL") };
        if au.token.is_some() {
            return bad(out, tag, "The URL is authorized already");
        }
        if au.url.user.as_deref().map(normalize_user_name).as_deref() != Some(a.user.name.as_str()) {
            return no(out, tag, None, "Only your own mailboxes can be shared");
        }
        let Some(id) = mailbox_id(store, &au.url.mailbox) else {
            return no(out, tag, Some("NONEXISTENT"), "Mailbox doesn't exist");
        };
        let key = store.urlauth_key(id, true).expect("made when missing");
        full.push(format!("{}:internal:{}", au.rump, token(&key, &au.rump)));
    }
    out.raw(b"* GENURLAUTH");
    for f in &full {
        out.sp().string(f.as_bytes(), true);
    }
    out.crlf();
    // A new key is answered for once it is on disk.
    ok_when_durable(a.user.manifest_durable(), tag, None, "GENURLAUTH completed.")
}

/// RESETKEY (RFC 4467 6.2): new keys for one mailbox, or for all.
pub fn reset(a: Authed<'_>, tag: &str, which: Option<&(Mailbox, Vec<String>)>, out: &mut Out) -> Directive {
    let store = &a.user.store;
    let id = match which {
        None => None,
        Some((mailbox, mechanisms)) => {
            if mechanisms.iter().any(|m| m != INTERNAL) {
                return no(out, tag, None, "Unsupported URLAUTH mechanism");
            }
            let name = match a.cx.mailbox_name(mailbox) {
                Ok(n) => n,
                Err(e) => return no(out, tag, Some("CANNOT"), e),
            };
            match mailbox_id(store, &name) {
                Some(id) => Some(id),
                None => return no(out, tag, Some("NONEXISTENT"), "Mailbox doesn't exist"),
            }
        }
    };
    store.reset_urlauth_keys(id);
    ok_when_durable(a.user.manifest_durable(), tag, None, "RESETKEY completed.")
}

/// URLFETCH (RFC 4467 6.3, RFC 5524 4): what each URL names, or NIL when
/// it is not valid for this user (bad or revoked token, expired, no such
/// message) without saying which.
pub fn fetch(a: Authed<'_>, tag: &str, items: &[UrlFetchItem], now: i64, out: &mut Out) -> Directive {
    out.raw(b"* URLFETCH");
    for item in items {
        out.sp().string(item.url.as_bytes(), true).sp();
        let Some((mbox, m, au)) = resolve(&a, &item.url, now) else {
            out.nil();
            continue;
        };
        let mb = mbox.borrow();
        if !item.extended {
            match url_data(&mb, &m, &au.url) {
                Some(d) => d.write(out, false, true),
                None => {
                    out.nil();
                }
            }
            continue;
        }
        // RFC 5524: the asked items, for a section of numbers only.
        let part: Option<Vec<u32>> = match &au.url.section {
            None => Some(Vec::new()),
            Some(s) => parse_url_section(s).filter(|s| s.text.is_none()).map(|s| s.part),
        };
        let (structure, decoded) = match part.and_then(|p| forms(&mb, &m, &p, item.binary)) {
            Some((s, d)) => (Some(s), d),
            None => (None, None),
        };
        if (item.body_part_structure && structure.is_none()) || (item.binary && decoded.is_none()) {
            out.nil();
            continue;
        }
        out.raw(b"(");
        if let (true, Some(s)) = (item.body_part_structure, structure) {
            out.raw(b"BODYPARTSTRUCTURE ").raw(&s);
            if item.binary {
                out.sp();
            }
        }
        if let Some(d) = decoded {
            out.raw(b"BINARY ");
            Data::Owned(d).write(out, true, true);
        }
        out.raw(b")");
    }
    out.crlf();
    ok(tag, None, "URLFETCH completed.")
}

/// Part `path` (the message for none) as RFC 5524 gives it: its body
/// structure, and with `binary` its binary form. The binary form is the
/// content with every base64 or quoted-printable leaf in it decoded, as
/// Dovecot gives it: leaves inside are then labelled `binary` in the data,
/// and the structure describes that form (under the stored encodings'
/// names, with the decoded sizes). None when `binary` and the part's
/// encoding is not known.
fn forms(mb: &crate::store::Mailbox, m: &Msg, path: &[u32], binary: bool) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let msg = mb.message(m).ok()?;
    let raw = msg.bytes();
    let entity = if path.is_empty() {
        raw
    } else {
        let p = with_cache(mb, m, |c| c.part(path)).ok()??;
        if binary && p.kind == Kind::Leaf && p.transfer == Transfer::Unknown {
            return None;
        }
        // The part with its MIME header, as a message of its own.
        raw.get(p.header as usize..(p.end as usize).max(p.body as usize))?
    };
    if !binary {
        return Some((analyze(entity).bodystructure, None));
    }
    let relabelled = decoded_leaves(entity, true).unwrap_or_else(|| entity.to_vec());
    let data = if path.is_empty() { relabelled } else { relabelled[header::header_len(&relabelled)..].to_vec() };
    let described = decoded_leaves(entity, false);
    Some((analyze(described.as_deref().unwrap_or(entity)).bodystructure, Some(data)))
}

/// The message a URL names, if this user may have it.
fn resolve(a: &Authed<'_>, url: &str, now: i64) -> Option<(MailboxRef, Msg, Authorized)> {
    let au = parse_authorized(url)?;
    let (mechanism, given) = au.token.as_ref()?;
    if mechanism != INTERNAL || au.expire.is_some_and(|t| t <= now) {
        return None;
    }
    let me = a.user.name.as_str();
    let allowed = match &au.access {
        // No submission server logs in as anyone else here: `submit+name`
        // is for that user's own sessions, as `user+name` is.
        Access::User(n) | Access::Submit(n) => normalize_user_name(n) == me,
        Access::AuthUser | Access::Anonymous => true,
    };
    if !allowed {
        return None;
    }
    // User names are compared as logins are (any case).
    let owner = normalize_user_name(au.url.user.as_deref()?);
    let owner = owner.as_str();
    let store: Rc<UserStore> = if owner == me { a.user.store.clone() } else { a.user.store.peer(owner).ok()? };
    let id = mailbox_id(&store, &au.url.mailbox)?;
    let key = store.urlauth_key(id, false)?;
    if !same(&token(&key, &au.rump), given) {
        return None;
    }
    let mbox = store.mailbox(&au.url.mailbox).ok()?;
    let m = {
        let mb = mbox.borrow();
        if au.url.uidvalidity.is_some_and(|v| v != mb.uidvalidity()) {
            return None;
        }
        *mb.find(au.url.uid)?
    };
    Some((mbox, m, au))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_tied_to_the_url_and_the_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let t = token(&k1, "imap://joe@h/INBOX/;uid=1;urlauth=anonymous");
        assert_eq!(t.len(), 64);
        assert_ne!(t, token(&k2, "imap://joe@h/INBOX/;uid=1;urlauth=anonymous"));
        assert_ne!(t, token(&k1, "imap://joe@h/INBOX/;uid=2;urlauth=anonymous"));
        assert!(same(&t, &t.clone()) && !same(&t, &t[1..]));
    }
}
