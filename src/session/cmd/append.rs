//! APPEND (RFC 9051 6.3.12, UIDPLUS RFC 4315, LITERAL+ RFC 7888,
//! APPENDLIMIT RFC 7889, MULTIAPPEND RFC 3502) and REPLACE (RFC 8508).
//! Each message streams into the store as it arrives; when the command
//! line ends, all of them are stored in one log write (none if any was
//! refused or failed) and acknowledged (with APPENDUID) only once durable.
//! A REPLACE then expunges the message it replaces, like MOVE its
//! originals.

use std::rc::Rc;

use crate::proto::imapurl;
use crate::proto::{AppendHeader, AppendMore, AppendWhole, CatPart, DateTime, Flag, Mailbox, Out, Replace};
use crate::session::flags::{keyword_mask, split_flags};
use crate::session::reply::{bad, no, not_durable, ok, ok_when_durable, store_error, when_durable};
use crate::session::state::{Authed, Directive, Session, Streaming, User, Wait};
use crate::store::{AppendHandle, Claim, MailboxRef, StoreError, UserStore};

/// Messages one MULTIAPPEND may carry; more is refused with `[LIMIT]`
/// (each is on disk until the command ends, and a log write holds all).
const MESSAGES_MAX: usize = 10_000;

/// An APPEND receiving its messages.
struct Appending {
    tag: String,
    mbox: MailboxRef,
    store: Rc<UserStore>,
    /// APPENDLIMIT of the session.
    message_max: u64,
    now: i64,
    /// Messages received whole, to be stored when the command ends.
    received: Vec<Received>,
    /// The message arriving now.
    current: Incoming,
    /// A write failed; the rest of the literal is read and dropped.
    failed: Option<StoreError>,
    /// REPLACE: the message the new one replaces.
    replacing: Option<Replaced>,
    /// The client sent ENABLE UTF8=ACCEPT (RFC 6855).
    utf8: bool,
}

/// The message a REPLACE removes once its replacement is stored: in the
/// selected mailbox, by UID, with its size (which its replacement may
/// reuse in the user's quota).
struct Replaced {
    mbox: MailboxRef,
    uid: u32,
    size: u64,
}

/// A message received whole, with what it is stored with.
struct Received {
    handle: AppendHandle,
    flags: u8,
    keywords: u64,
    date: i64,
    /// Its room in the user's quota, until it is stored.
    _claim: Claim,
}

/// The message arriving now and what it will be stored with.
struct Incoming {
    sink: Sink,
    flags: u8,
    keywords: u64,
    date: i64,
    claim: Claim,
    header: HeaderWatch,
}

/// Whether a message's header (up to its first empty line) holds 8-bit
/// bytes, watched as the message streams in.
struct HeaderWatch {
    ended: bool,
    /// Nothing but CR since the last LF (or the start).
    line_empty: bool,
    eight_bit: bool,
}

impl Default for HeaderWatch {
    fn default() -> Self {
        HeaderWatch { ended: false, line_empty: true, eight_bit: false }
    }
}

impl HeaderWatch {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if self.ended {
                return;
            }
            match b {
                b'\n' if self.line_empty => self.ended = true,
                b'\n' => self.line_empty = true,
                b'\r' => {}
                _ => {
                    self.line_empty = false;
                    self.eight_bit |= b >= 0x80;
                }
            }
        }
    }
}

/// RFC 6855 4: without ENABLE UTF8=ACCEPT, a message whose header has
/// 8-bit bytes is refused with NO (Err: the answer, written).
fn header_allowed(out: &mut Out, tag: &str, header: &HeaderWatch, utf8: bool) -> Result<(), Directive> {
    if header.eight_bit && !utf8 {
        return Err(no(out, tag, Some("CANNOT"), "Message header has 8-bit characters: ENABLE UTF8=ACCEPT first"));
    }
    Ok(())
}

/// Where the message goes as it arrives.
enum Sink {
    /// Straight into the store.
    Store(AppendHandle),
    /// A binary APPEND (RFC 3516 4.4): kept whole, its binary parts
    /// re-encoded before it is stored (see `mime::base64_binary_parts`).
    Binary(Vec<u8>),
}

/// What one message of an APPEND announces before its literal.
struct Announced<'a> {
    flags: &'a [Flag],
    date: Option<DateTime>,
    size: u64,
    binary: bool,
}

/// Checks a message's announcement and makes room for it (on disk and in
/// the user's quota, RFC 9208 4.3.1); Err: the answer (already written)
/// that ends the command.
fn incoming(
    out: &mut Out,
    tag: &str,
    (store, mbox): (&UserStore, &MailboxRef),
    message_max: u64,
    now: i64,
    m: Announced<'_>,
    replacing: Option<&Replaced>,
) -> Result<Incoming, Directive> {
    if m.size == 0 {
        return Err(no(out, tag, Some("CANNOT"), "Can't save a zero byte message."));
    }
    if m.size > message_max {
        return Err(no(out, tag, Some("TOOBIG"), "Message is larger than APPENDLIMIT"));
    }
    let (flags, kws) = split_flags(m.flags).map_err(|f| bad(out, tag, &format!("Invalid system flag {f}")))?;
    let keywords = keyword_mask(mbox, &kws).map_err(|e| store_error(out, tag, &e))?;
    // A replacement takes the place of the message it replaces: what it
    // claims is what the mailboxes will hold once the command is done.
    let claim = match replacing {
        Some(r) => store.claim(0, m.size.saturating_sub(r.size)),
        None => store.claim(1, m.size),
    };
    let claim = claim.map_err(|e| store_error(out, tag, &e))?;
    let sink = if m.binary { Sink::Binary(Vec::new()) } else { Sink::Store(mbox.borrow_mut().begin_append(m.size).map_err(|e| store_error(out, tag, &e))?) };
    Ok(Incoming { sink, flags, keywords, date: m.date.map_or(now, |d| d.unix), claim, header: HeaderWatch::default() })
}

/// APPEND is valid once logged in (RFC 9051 6.3.12); its answer may carry
/// EXPUNGE responses.
pub fn start(s: &mut Session, h: AppendHeader, now: i64, out: &mut Out) -> Directive {
    let replacing = match h.replace.as_ref().map(|r| replaced(s, &h.tag, r, out)) {
        Some(Ok(r)) => Some(r),
        Some(Err(())) => return Directive::RejectAppend,
        None => None,
    };
    let Some(mut a) = s.authed() else {
        out.tagged(&h.tag, "BAD", None, "Command not valid before authentication");
        return Directive::RejectAppend;
    };
    let Ok(mbox) = target(&mut a, &h.tag, &h.mailbox, out) else { return Directive::RejectAppend };
    let message_max = a.cx.cfg.limits.message_max;
    let announced = Announced { flags: &h.flags, date: h.date, size: h.size, binary: h.binary };
    let store = a.user.store.clone();
    let utf8 = a.cx.enabled.utf8;
    let current = match incoming(out, &h.tag, (&store, &mbox), message_max, now, announced, replacing.as_ref()) {
        Ok(c) => c,
        Err(_) => return Directive::RejectAppend,
    };
    if !h.nonsync {
        out.raw(b"+ Ready for literal data\r\n");
    }
    a.cx.wait =
        Wait::Streaming(Box::new(Appending { tag: h.tag, mbox, store, message_max, now, received: Vec::new(), current, failed: None, replacing, utf8 }));
    Directive::AcceptAppend
}

/// The message a REPLACE names (RFC 8508 3.2, 3.3): valid only with a
/// mailbox selected read-write; a sequence number beyond the mailbox is
/// BAD, a UID that is not there NO. Err: the answer is written.
fn replaced(s: &mut Session, tag: &str, r: &Replace, out: &mut Out) -> Result<Replaced, ()> {
    let Some(m) = s.in_mailbox() else {
        if s.authed().is_some() {
            bad(out, tag, "REPLACE needs a selected mailbox");
        } else {
            bad(out, tag, "Command not valid before authentication");
        }
        return Err(());
    };
    if m.sel.read_only {
        no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
        return Err(());
    }
    let Some(mut selection) = m.sel.select(&r.message, r.uid) else {
        bad(out, tag, "Invalid message sequence number");
        return Err(());
    };
    let mbox = m.sel.mbox.clone();
    let found = selection.next().and_then(|(_, uid)| {
        let mb = mbox.borrow();
        mb.find(uid).map(|msg| (uid, mb.location(msg).length))
    });
    let Some((uid, size)) = found else {
        no(out, tag, Some("NONEXISTENT"), "The message to replace does not exist");
        return Err(());
    };
    Ok(Replaced { mbox, uid, size })
}

/// The mailbox an APPEND stores into (its answer may carry EXPUNGE
/// responses); Err: the NO is written (TRYCREATE for one that does not
/// exist, RFC 9051 6.3.12).
fn target(a: &mut Authed<'_>, tag: &str, mailbox: &Mailbox, out: &mut Out) -> Result<MailboxRef, ()> {
    a.cx.expunge_ok = true;
    let name = a.cx.mailbox_name(mailbox).map_err(|e| {
        no(out, tag, Some("CANNOT"), e);
    })?;
    a.user.open_mailbox(&name).map_err(|(code, text)| {
        no(out, tag, if code == Some("NONEXISTENT") { Some("TRYCREATE") } else { code }, &text);
    })
}

/// APPEND read whole with its command: one or more messages, each a
/// literal or CATENATE parts (RFC 4469), TEXT as sent and URLs resolved to
/// (parts of) messages in the user's mailboxes. All are stored together,
/// or none ([BADURL] for a URL that does not resolve, RFC 4469 4).
pub fn run_whole(s: &mut Session, tag: &str, mailbox: &Mailbox, messages: Vec<AppendWhole>, replace: Option<Replace>, now: i64, out: &mut Out) -> Directive {
    let replacing = match replace.as_ref().map(|r| replaced(s, tag, r, out)) {
        Some(Ok(r)) => Some(r),
        Some(Err(())) => return Directive::Next,
        None => None,
    };
    let Some(mut a) = s.authed() else {
        return bad(out, tag, "Command not valid before authentication");
    };
    let Ok(mbox) = target(&mut a, tag, mailbox, out) else { return Directive::Next };
    let message_max = a.cx.cfg.limits.message_max;
    if messages.len() > MESSAGES_MAX {
        return no(out, tag, Some("LIMIT"), "Too many messages in one APPEND");
    }
    let mut received = Vec::with_capacity(messages.len());
    for m in messages {
        let mut data = Vec::new();
        for part in &m.parts {
            match part {
                CatPart::Text(t) => data.extend_from_slice(t),
                CatPart::Url(u) => match url_bytes(a.user, u) {
                    Some(b) => data.extend_from_slice(&b),
                    // url-resp-text (RFC 4469 6): the URL without `]` or line ends.
                    None => {
                        let shown: String = u.chars().filter(|&c| c != ']' && c != '\r' && c != '\n' && c != '\0').collect();
                        return no(out, tag, Some(&format!("BADURL {shown}")), "Invalid URL");
                    }
                },
            }
            if data.len() as u64 > message_max {
                return no(out, tag, Some("TOOBIG"), "Message is larger than APPENDLIMIT");
            }
        }
        let mut header = HeaderWatch::default();
        header.feed(&data);
        if let Err(d) = header_allowed(out, tag, &header, a.cx.enabled.utf8) {
            return d;
        }
        let announced = Announced { flags: &m.flags, date: m.date, size: data.len() as u64, binary: false };
        let Ok(Incoming { sink: Sink::Store(mut handle), flags, keywords, date, claim, .. }) =
            incoming(out, tag, (&a.user.store, &mbox), message_max, now, announced, replacing.as_ref())
        else {
            return Directive::Next;
        };
        if let Err(e) = mbox.borrow_mut().append_chunk(&mut handle, &data) {
            return store_error(out, tag, &e);
        }
        received.push(Received { handle, flags, keywords, date, _claim: claim });
    }
    let store = a.user.store.clone();
    stored(tag.to_string(), mbox, store, received, replacing, out)
}

/// The bytes an IMAP URL names in the user's mailboxes (RFC 4469 5: the
/// message, or the section as `BODY.PEEK[section]<partial>` gives it).
fn url_bytes(user: &User, url: &str) -> Option<Vec<u8>> {
    let u = imapurl::parse(url)?;
    if u.user.as_deref().is_some_and(|x| x != user.name) {
        return None;
    }
    let mbox = user.open_mailbox(&u.mailbox).ok()?;
    let mb = mbox.borrow();
    if u.uidvalidity.is_some_and(|v| v != mb.uidvalidity()) {
        return None;
    }
    let m = *mb.find(u.uid)?;
    Some(super::fetch::url_data(&mb, &m, &u)?.bytes().to_vec())
}

/// Stores `received` together and answers once durable, with APPENDUID;
/// a REPLACE then expunges what it replaces and answers once that is
/// durable too (RFC 8508 3.4: APPENDUID in an untagged OK, then EXPUNGE).
fn stored(tag: String, mbox: MailboxRef, store: Rc<UserStore>, received: Vec<Received>, replacing: Option<Replaced>, out: &mut Out) -> Directive {
    let batch = received.into_iter().map(|r| (r.handle, r.flags, r.keywords, r.date)).collect();
    let r = mbox.borrow_mut().finish_appends(batch);
    match r {
        Ok(uids) => {
            let ticket = store.durable(&mbox);
            when_durable(
                ticket,
                Box::new(move |r, out| {
                    if let Err(e) = r {
                        return not_durable(out, &tag, &e);
                    }
                    // RFC 4315 3: one UID, or the range of a MULTIAPPEND's.
                    let set = match (uids.first(), uids.last()) {
                        (Some(f), Some(l)) if f != l => format!("{f}:{l}"),
                        (Some(f), _) => f.to_string(),
                        _ => String::new(),
                    };
                    let code = format!("APPENDUID {} {set}", mbox.borrow().uidvalidity());
                    let Some(old) = replacing else { return ok(&tag, Some(&code), "Append completed.") };
                    out.untagged_status("OK", Some(&code), "Replacement Message ID");
                    let r = old.mbox.borrow_mut().expunge(&[old.uid]);
                    match r {
                        // Expunged meanwhile by another session: replaced all the same.
                        Ok(gone) if gone.is_empty() => ok(&tag, None, "Replace completed."),
                        Ok(_) => ok_when_durable(store.durable(&old.mbox), &tag, None, "Replace completed."),
                        Err(e) => store_error(out, &tag, &e),
                    }
                }),
            )
        }
        Err(e) => store_error(out, &tag, &e),
    }
}

impl Appending {
    /// The message that just arrived whole, ready to be stored.
    fn received(&mut self) -> Result<(), StoreError> {
        let Incoming { sink, flags, keywords, date, claim, .. } = std::mem::replace(&mut self.current, Incoming::none());
        let (handle, claim) = match (sink, claim) {
            (Sink::Store(h), claim) => (h, claim),
            (Sink::Binary(v), announced) => {
                let data = crate::mime::base64_binary_parts(&v).unwrap_or(v);
                // Re-encoded, the message is larger than announced: claim what it is.
                drop(announced);
                let claim = self.store.claim(1, data.len() as u64)?;
                let mut mb = self.mbox.borrow_mut();
                let mut h = mb.begin_append(data.len() as u64)?;
                mb.append_chunk(&mut h, &data)?;
                (h, claim)
            }
        };
        self.received.push(Received { handle, flags, keywords, date, _claim: claim });
        Ok(())
    }
}

impl Incoming {
    /// A placeholder between two messages.
    fn none() -> Incoming {
        Incoming { sink: Sink::Binary(Vec::new()), flags: 0, keywords: 0, date: 0, claim: Claim::nothing(), header: HeaderWatch::default() }
    }
}

impl Streaming for Appending {
    fn data(&mut self, d: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.current.header.feed(d);
        match &mut self.current.sink {
            Sink::Store(h) => {
                if let Err(e) = self.mbox.borrow_mut().append_chunk(h, d) {
                    self.failed = Some(e);
                }
            }
            Sink::Binary(v) => v.extend_from_slice(d),
        }
    }

    fn more(&mut self, m: AppendMore, out: &mut Out) -> Result<(), Directive> {
        if let Some(e) = self.failed.take() {
            return Err(store_error(out, &self.tag, &e));
        }
        header_allowed(out, &self.tag, &self.current.header, self.utf8)?;
        self.received().map_err(|e| store_error(out, &self.tag, &e))?;
        if self.replacing.is_some() {
            return Err(bad(out, &self.tag, "REPLACE takes one message"));
        }
        if self.received.len() >= MESSAGES_MAX {
            return Err(no(out, &self.tag, Some("LIMIT"), "Too many messages in one APPEND"));
        }
        let announced = Announced { flags: &m.flags, date: m.date, size: m.size, binary: m.binary };
        self.current = incoming(out, &self.tag, (&self.store, &self.mbox), self.message_max, self.now, announced, None)?;
        if !m.nonsync {
            out.raw(b"+ Ready for literal data\r\n");
        }
        Ok(())
    }

    fn end(self: Box<Self>, r: Result<(), String>, out: &mut Out) -> Directive {
        let mut a = *self;
        if let Err(msg) = r {
            return bad(out, &a.tag, &msg);
        }
        if let Some(e) = a.failed.take() {
            return store_error(out, &a.tag, &e);
        }
        if let Err(d) = header_allowed(out, &a.tag, &a.current.header, a.utf8) {
            return d;
        }
        if let Err(e) = a.received() {
            return store_error(out, &a.tag, &e);
        }
        stored(a.tag, a.mbox, a.store, a.received, a.replacing, out)
    }
}
