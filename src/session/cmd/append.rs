//! APPEND (RFC 9051 6.3.12, UIDPLUS RFC 4315, LITERAL+ RFC 7888,
//! APPENDLIMIT RFC 7889). The message streams into the store as it arrives
//! and is acknowledged (with APPENDUID) only once it is durable.

use std::rc::Rc;

use crate::proto::{AppendHeader, Out};
use crate::session::flags::{keyword_mask, split_flags};
use crate::session::reply::{bad, no, not_durable, ok, store_error, when_durable};
use crate::session::state::{Directive, Session, Streaming, Wait};
use crate::store::{AppendHandle, MailboxRef, StoreError, UserStore};

/// An APPEND receiving its message.
struct Appending {
    tag: String,
    mbox: MailboxRef,
    store: Rc<UserStore>,
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

/// APPEND is valid once logged in (RFC 9051 6.3.12); its answer may carry
/// EXPUNGE responses.
pub fn start(s: &mut Session, h: AppendHeader, now: i64, out: &mut Out) -> Directive {
    let reject = |d: Directive| -> Directive {
        let _ = d;
        Directive::RejectAppend
    };
    let Some(a) = s.authed() else {
        out.tagged(&h.tag, "BAD", None, "Command not valid before authentication");
        return Directive::RejectAppend;
    };
    a.cx.expunge_ok = true;
    let name = match a.cx.mailbox_name(&h.mailbox) {
        Ok(n) => n,
        Err(e) => return reject(no(out, &h.tag, Some("CANNOT"), e)),
    };
    let mbox = match a.user.open_mailbox(&name) {
        Ok(m) => m,
        Err((Some("NONEXISTENT"), text)) => return reject(no(out, &h.tag, Some("TRYCREATE"), &text)),
        Err((code, text)) => return reject(no(out, &h.tag, code, &text)),
    };
    if h.size == 0 {
        return reject(no(out, &h.tag, Some("CANNOT"), "Can't save a zero byte message."));
    }
    if h.size > a.cx.cfg.limits.message_max {
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
    let store = a.user.store.clone();
    a.cx.wait = Wait::Streaming(Box::new(Appending { tag: h.tag, mbox, store, sink, flags, keywords, date, failed: None }));
    Directive::AcceptAppend
}

impl Streaming for Appending {
    fn data(&mut self, d: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match &mut self.sink {
            Sink::Store(h) => {
                if let Err(e) = self.mbox.borrow_mut().append_chunk(h, d) {
                    self.failed = Some(e);
                }
            }
            Sink::Binary(v) => v.extend_from_slice(d),
        }
    }

    fn end(self: Box<Self>, r: Result<(), String>, out: &mut Out) -> Directive {
        let a = *self;
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
                let ticket = a.store.durable(&a.mbox);
                let (tag, mbox) = (a.tag, a.mbox);
                when_durable(
                    ticket,
                    Box::new(move |r, out| match r {
                        Ok(()) => {
                            let code = format!("APPENDUID {} {}", mbox.borrow().uidvalidity(), uid);
                            ok(&tag, Some(&code), "Append completed.")
                        }
                        Err(e) => not_durable(out, &tag, &e),
                    }),
                )
            }
            Err(e) => store_error(out, &a.tag, &e),
        }
    }
}
