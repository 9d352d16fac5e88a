//! APPEND (RFC 9051 6.3.12, UIDPLUS RFC 4315, LITERAL+ RFC 7888,
//! APPENDLIMIT RFC 7889). The message streams into the store as it arrives
//! and is acknowledged (with APPENDUID) only once it is durable.

use super::{bad, keyword_mask, mailbox_durable, no, not_durable, ok, open_mailbox, split_flags, store_error, when_durable, Directive, Session, Wait};
use crate::proto::{AppendHeader, Out};
use crate::store::{AppendHandle, MailboxRef, StoreError};

pub struct Appending {
    tag: String,
    mbox: MailboxRef,
    sink: Sink,
    flags: u8,
    keywords: u64,
    date: i64,
    /// A write failed; the rest of the literal is read and dropped.
    failed: Option<StoreError>,
}

/// Where the message goes as it arrives.
enum Sink {
    /// Straight into the store.
    Store(AppendHandle),
    /// A binary APPEND (RFC 3516 4.4): kept whole, its binary parts
    /// re-encoded before it is stored (see `mime::base64_binary_parts`).
    Binary(Vec<u8>),
}

pub fn start(s: &mut Session, h: AppendHeader, now: i64, out: &mut Out) -> Directive {
    let reject = |d: Directive| -> Directive {
        let _ = d;
        Directive::RejectAppend
    };
    if s.state.authed().is_none() {
        out.tagged(&h.tag, "BAD", None, "Command not valid before authentication");
        return Directive::RejectAppend;
    }
    let name = match s.mailbox_name(&h.mailbox) {
        Ok(n) => n,
        Err(e) => return reject(no(out, &h.tag, Some("CANNOT"), e)),
    };
    let mbox = match open_mailbox(s, &name) {
        Ok(m) => m,
        Err((Some("NONEXISTENT"), text)) => return reject(no(out, &h.tag, Some("TRYCREATE"), &text)),
        Err((code, text)) => return reject(no(out, &h.tag, code, &text)),
    };
    if h.size == 0 {
        return reject(no(out, &h.tag, Some("CANNOT"), "Can't save a zero byte message."));
    }
    if h.size > s.cfg.limits.message_max {
        return reject(no(out, &h.tag, Some("TOOBIG"), "Message is larger than APPENDLIMIT"));
    }
    let (flags, kws) = match split_flags(&h.flags) {
        Ok(x) => x,
        Err(f) => return reject(bad(out, &h.tag, &format!("Invalid system flag {f}"))),
    };
    let keywords = match keyword_mask(&mbox, &kws) {
        Ok(k) => k,
        Err(e) => return reject(store_error(out, &h.tag, &e)),
    };
    let sink = if h.binary {
        Sink::Binary(Vec::new())
    } else {
        match mbox.borrow_mut().begin_append(h.size) {
            Ok(x) => Sink::Store(x),
            Err(e) => return reject(store_error(out, &h.tag, &e)),
        }
    };
    if !h.nonsync {
        out.raw(b"+ Ready for literal data\r\n");
    }
    let date = h.date.map_or(now, |d| d.unix);
    s.wait = Wait::Append(Box::new(Appending { tag: h.tag, mbox, sink, flags, keywords, date, failed: None }));
    Directive::AcceptAppend
}

pub fn data(s: &mut Session, d: &[u8], _out: &mut Out) -> Directive {
    if let Wait::Append(a) = &mut s.wait {
        if a.failed.is_none() {
            match &mut a.sink {
                Sink::Store(h) => {
                    if let Err(e) = a.mbox.borrow_mut().append_chunk(h, d) {
                        a.failed = Some(e);
                    }
                }
                Sink::Binary(v) => v.extend_from_slice(d),
            }
        }
    }
    Directive::Next
}

pub fn end(s: &mut Session, r: Result<(), String>, out: &mut Out) -> Directive {
    let Wait::Append(a) = std::mem::replace(&mut s.wait, Wait::None) else { return Directive::Next };
    let a = *a;
    if let Err(msg) = r {
        return bad(out, &a.tag, &msg);
    }
    if let Some(e) = a.failed {
        return store_error(out, &a.tag, &e);
    }
    let r = match a.sink {
        Sink::Store(h) => a.mbox.borrow_mut().finish_append(h, a.flags, a.keywords, a.date),
        Sink::Binary(v) => {
            let data = crate::mime::base64_binary_parts(&v).unwrap_or(v);
            a.mbox.borrow_mut().append_bytes(&data, a.flags, a.keywords, a.date)
        }
    };
    match r {
        Ok(uid) => {
            let ticket = mailbox_durable(s, &a.mbox);
            let (tag, mbox) = (a.tag, a.mbox);
            when_durable(
                s,
                ticket,
                Box::new(move |s, r, out| match r {
                    Ok(()) => {
                        let code = format!("APPENDUID {} {}", mbox.borrow().uidvalidity(), uid);
                        ok(s, out, &tag, Some(&code), "Append completed.", true)
                    }
                    Err(e) => not_durable(out, &tag, &e),
                }),
            )
        }
        Err(e) => store_error(out, &a.tag, &e),
    }
}
