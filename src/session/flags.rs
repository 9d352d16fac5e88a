//! Message flags as IMAP shows them and takes them: the system flags and
//! their order, the `FLAGS (...)` item, and a client's flag list turned into
//! the store's bits and keyword numbers.

use crate::proto::{Flag, Out};
use crate::store::format::{F_ANSWERED, F_DELETED, F_DRAFT, F_FLAGGED, F_SEEN};
use crate::store::{MailboxRef, Msg, StoreError};

pub use crate::store::format::SYSTEM_FLAGS;

/// `FLAGS (...)` of a message.
pub fn flags_item(out: &mut Out, m: &Msg, keywords: &[String], recent: bool) {
    out.raw(b"FLAGS (");
    let mut first = true;
    let mut put = |out: &mut Out, s: &str| {
        if !first {
            out.sp();
        }
        first = false;
        out.str(s);
    };
    for (bit, name) in SYSTEM_FLAGS {
        if m.flags & bit != 0 {
            put(out, name);
        }
    }
    if recent {
        put(out, "\\Recent");
    }
    for (i, k) in keywords.iter().enumerate() {
        if m.keywords & (1 << i) != 0 {
            put(out, k);
        }
    }
    out.raw(b")");
}

/// Splits flags into system flag bits and keyword names. `\Recent` and
/// unknown `\Flags` cannot be stored (RFC 9051 2.3.2): Err names the culprit.
pub(crate) fn split_flags(flags: &[Flag]) -> Result<(u8, Vec<String>), String> {
    let mut bits = 0;
    let mut kws = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => bits |= F_SEEN,
            Flag::Answered => bits |= F_ANSWERED,
            Flag::Flagged => bits |= F_FLAGGED,
            Flag::Deleted => bits |= F_DELETED,
            Flag::Draft => bits |= F_DRAFT,
            Flag::Recent | Flag::Extension(_) => return Err(f.as_str().to_ascii_uppercase()),
            Flag::Keyword(k) => {
                if !kws.iter().any(|x: &String| x.eq_ignore_ascii_case(k)) {
                    kws.push(k.clone());
                }
            }
        }
    }
    Ok((bits, kws))
}

/// Keyword names to a mailbox bit mask, defining new keywords.
pub(crate) fn keyword_mask(mbox: &MailboxRef, names: &[String]) -> Result<u64, StoreError> {
    let mut mask = 0;
    let mut mb = mbox.borrow_mut();
    for n in names {
        if let Some(i) = mb.keyword(n, true)? {
            mask |= 1 << i;
        }
    }
    Ok(mask)
}
