//! METADATA (RFC 5464): annotations on the server (mailbox `""`) and on
//! the user's mailboxes, kept by `store/metadata.rs`.
//!
//! A mailbox has one user, its owner, so its `/private` and `/shared`
//! entries are both theirs. The server's `/shared` entries belong to the
//! administrator (`/shared/admin` from `[metadata] admin`); users set only
//! `/private` ones there (3.3). A mailbox's `/private/specialuse` is its
//! special use (RFC 6154 4), changed under the same rules as CREATE's.
//! ringmail sends no unsolicited METADATA responses (optional, 4.4), so
//! ENABLE METADATA has nothing to turn on.

use std::collections::BTreeMap;

use super::create::special_use_named;
use crate::proto::{Mailbox, MetadataDepth, Out};
use crate::session::reply::{mailbox_error, no, ok, ok_when_durable, MOVING};
use crate::session::state::{Authed, Directive};
use crate::store::metadata::{reaches, SetError, SERVER, SPECIAL_USE};

/// The server entry that names the administrator (3.2.1.1).
const ADMIN: &str = "/shared/admin";

/// The owner whose annotations `mailbox` names, and the name as the
/// response spells it; or the NO already written.
fn owner(a: &Authed<'_>, tag: &str, mailbox: &Mailbox, out: &mut Out) -> Result<(u32, String), Directive> {
    let name = a.cx.mailbox_name(mailbox).map_err(|e| no(out, tag, Some("CANNOT"), e))?;
    let owner = a.user.store.metadata_owner(&name).map_err(|e| mailbox_error(out, tag, e))?;
    Ok((owner, crate::store::manifest::canonical(&name).unwrap_or(name)))
}

/// GETMETADATA (4.2): one METADATA response with every entry found; an
/// entry asked for by name that has no value is NIL (as Dovecot answers).
/// Values longer than MAXSIZE are left out and the longest is named in
/// `[METADATA LONGENTRIES n]` (4.2.1).
pub fn get(a: Authed<'_>, tag: &str, mailbox: &Mailbox, entries: &[String], max_size: Option<u64>, depth: MetadataDepth, out: &mut Out) -> Directive {
    let (owner, name) = match owner(&a, tag, mailbox, out) {
        Ok(o) => o,
        Err(d) => return d,
    };
    let mut found: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for entry in entries {
        let mut values = a.user.store.metadata(owner, entry, depth);
        if let (SERVER, Some(admin)) = (owner, &a.cx.cfg.admin) {
            if reaches(entry, depth, ADMIN) {
                values.push((ADMIN.to_string(), admin.clone().into_bytes()));
            }
        }
        if values.is_empty() && depth == MetadataDepth::Zero {
            found.insert(entry.clone(), None);
        }
        found.extend(values.into_iter().map(|(k, v)| (k, Some(v))));
    }
    let mut longest: Option<usize> = None;
    let utf8 = a.cx.utf8_names();
    let mut first = true;
    for (entry, value) in &found {
        if let (Some(max), Some(v)) = (max_size, value) {
            if v.len() as u64 > max {
                longest = longest.max(Some(v.len()));
                continue;
            }
        }
        if first {
            out.raw(b"* METADATA ").mailbox(&name, utf8).raw(b" (");
            first = false;
        } else {
            out.sp();
        }
        out.astring(entry.as_bytes(), false).sp();
        match value {
            // A value with NUL only travels as literal8 (RFC 5464 5, RFC 3516).
            Some(v) if v.contains(&0) => out.raw(b"~").literal(v),
            v => out.nstring(v.as_deref(), utf8),
        };
    }
    if !first {
        out.raw(b")\r\n");
    }
    let code = longest.map(|n| format!("METADATA LONGENTRIES {n}"));
    ok(tag, code.as_deref(), "Getmetadata completed.")
}

/// SETMETADATA (4.3): every value set, or none.
pub fn set(a: Authed<'_>, tag: &str, mailbox: &Mailbox, values: &[(String, Option<Vec<u8>>)], out: &mut Out) -> Directive {
    let (owner, _) = match owner(&a, tag, mailbox, out) {
        Ok(o) => o,
        Err(d) => return d,
    };
    let mut values = values.to_vec();
    for (entry, value) in &mut values {
        if owner == SERVER && entry.starts_with("/shared") {
            return no(out, tag, Some("NOPERM"), "Shared server entries are set by the administrator");
        }
        if owner != SERVER && entry == SPECIAL_USE {
            let wanted = value.as_deref().unwrap_or_default();
            if wanted.is_empty() {
                continue;
            }
            match std::str::from_utf8(wanted).ok().and_then(special_use_named) {
                Some(canonical) => *value = Some(canonical.as_bytes().to_vec()),
                None => return no(out, tag, Some("USEATTR"), "Unsupported special-use attribute"),
            }
        }
    }
    match a.user.store.set_metadata(owner, &values, a.cx.cfg.metadata) {
        Ok(()) => ok_when_durable(a.user.manifest_durable(), tag, None, "Setmetadata completed."),
        Err(SetError::TooLarge(max)) => no(out, tag, Some(&format!("METADATA MAXSIZE {max}")), "Value is too long"),
        Err(SetError::TooMany) => no(out, tag, Some("METADATA TOOMANY"), "Too many annotations"),
        Err(SetError::Moving) => no(out, tag, Some("UNAVAILABLE"), MOVING),
    }
}
