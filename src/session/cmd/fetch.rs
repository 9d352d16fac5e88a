//! FETCH and UID FETCH (RFC 9051 6.4.5, BINARY RFC 3516, CONDSTORE
//! RFC 7162). ENVELOPE and BODYSTRUCTURE come from the cache written at
//! delivery; message bytes are spliced into the output straight from the
//! mapped segment, never copied.

use crate::mime::{header, Cache, Kind, Transfer};
use crate::proto::imapurl::ImapUrl;
use crate::proto::parse::parse_url_section;
use crate::proto::{FetchItem, FetchModifiers, Legacy, Out, PreviewForm, Ranges, Section, SectionText, SequenceSet, Shared};
use crate::session::flags::flags_item;
use crate::session::reply::{bad, enable_condstore, no, ok, ok_when_durable, store_error};
use crate::session::selected::Selected;
use crate::session::state::{run_in_mailbox, Directive, InMailbox, MailboxCursor, Progress, OUTPUT_BUDGET};
use crate::session::vanished;
use crate::session::walk::SetWalk;
use crate::store::format::F_SEEN;
use crate::store::StoreError;
use crate::store::{Mailbox, Msg};

/// Bytes of a section: shared from the mapping, or built (HEADER.FIELDS, BINARY).
pub(crate) enum Data {
    Shared(Shared),
    Owned(Vec<u8>),
}

impl Data {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Data::Shared(s) => s.bytes(),
            Data::Owned(v) => v,
        }
    }

    pub(crate) fn window(self, partial: Option<(u64, u64)>) -> Data {
        let Some((origin, count)) = partial else { return self };
        let len = self.bytes().len() as u64;
        let start = origin.min(len);
        let end = origin.saturating_add(count).min(len);
        match self {
            Data::Shared(s) => Data::Shared(s.slice(start as usize, (end - start) as usize)),
            Data::Owned(v) => Data::Owned(v[start as usize..end as usize].to_vec()),
        }
    }

    /// As a literal: `~{n}` for BINARY content with NULs (RFC 3516 4.2),
    /// else `{n}`, where NUL may not appear (RFC 9051 4.3): a message
    /// stored with NULs (`may_hold_nul`) has them sent as 0x80, as Dovecot does.
    pub(crate) fn write(self, out: &mut Out, binary: bool, may_hold_nul: bool) {
        let nul = binary && memchr::memchr(0, self.bytes()).is_some();
        if !binary && may_hold_nul && memchr::memchr(0, self.bytes()).is_some() {
            let v: Vec<u8> = self.bytes().iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
            out.literal(&v);
            return;
        }
        match self {
            Data::Shared(s) => {
                out.literal_shared(s, nul);
            }
            Data::Owned(v) => {
                if nul {
                    out.raw(b"~");
                }
                out.literal(&v);
            }
        }
    }
}

/// The message's cache, or a fresh analysis when the stored one is missing
/// or damaged (e.g. after a rebuild from segments).
pub(crate) fn with_cache<R>(mb: &Mailbox, m: &Msg, f: impl FnOnce(&Cache<'_>) -> R) -> std::io::Result<R> {
    let stored = mb.cache(m)?;
    if let Some(c) = Cache::parse(stored.bytes()) {
        return Ok(f(&c));
    }
    let msg = mb.message(m)?;
    let blob = crate::mime::analyze(msg.bytes());
    let c = Cache::parse(&blob).ok_or_else(|| std::io::Error::other("cannot analyse message"))?;
    Ok(f(&c))
}

/// The bytes of `BODY[section]` (RFC 9051 6.4.5). A part that does not
/// exist is empty, as in Dovecot.
pub(crate) fn section(mb: &Mailbox, m: &Msg, s: &Section) -> std::io::Result<Data> {
    let msg = mb.message(m)?;
    let all = msg.bytes();
    if s.part.is_empty() {
        let hl = header::header_len(all);
        return Ok(match &s.text {
            None => Data::Shared(msg),
            Some(SectionText::Header) => Data::Shared(msg.slice(0, hl)),
            Some(SectionText::Text) => Data::Shared(msg.slice(hl, all.len() - hl)),
            Some(SectionText::HeaderFields { not, fields }) => Data::Owned(header::select(&all[..hl], fields, *not)),
            Some(SectionText::Mime) => Data::Owned(Vec::new()),
        });
    }
    let part = with_cache(mb, m, |c| c.part(&s.part))?;
    let Some(p) = part else { return Ok(Data::Owned(Vec::new())) };
    let (h, b, ib, e) = (p.header as usize, p.body as usize, p.inner_body as usize, p.end as usize);
    if e > all.len() || h > b || b > e || ib < b || ib > e {
        return Ok(Data::Owned(Vec::new()));
    }
    Ok(match (&s.text, p.kind) {
        (None, _) => Data::Shared(msg.slice(b, e - b)),
        (Some(SectionText::Mime), _) => Data::Shared(msg.slice(h, b - h)),
        (Some(SectionText::Header), Kind::Message) => Data::Shared(msg.slice(b, ib - b)),
        (Some(SectionText::Text), Kind::Message) => Data::Shared(msg.slice(ib, e - ib)),
        (Some(SectionText::HeaderFields { not, fields }), Kind::Message) => Data::Owned(header::select(&all[b..ib], fields, *not)),
        _ => Data::Owned(Vec::new()),
    })
}

/// Decoded content of a part for BINARY; Err(()) when its transfer
/// encoding cannot be undone (RFC 3516 UNKNOWN-CTE).
pub(crate) fn binary(mb: &Mailbox, m: &Msg, part: &[u32]) -> std::io::Result<Result<Data, ()>> {
    if part.is_empty() {
        return Ok(Ok(Data::Shared(mb.message(m)?)));
    }
    let Some(p) = with_cache(mb, m, |c| c.part(part))? else { return Ok(Ok(Data::Owned(Vec::new()))) };
    let msg = mb.message(m)?;
    let (b, e) = (p.body as usize, (p.end as usize).min(msg.len()));
    if b > e {
        return Ok(Ok(Data::Owned(Vec::new())));
    }
    if p.kind != Kind::Leaf || p.transfer == Transfer::Identity {
        return Ok(Ok(Data::Shared(msg.slice(b, e - b))));
    }
    Ok(crate::mime::decode_transfer(p.transfer, &msg.bytes()[b..e]).map(Data::Owned).ok_or(()))
}

fn section_name(out: &mut Out, s: &Section) {
    let path: Vec<String> = s.part.iter().map(|n| n.to_string()).collect();
    out.str(&path.join("."));
    let text = match &s.text {
        None => return,
        Some(t) => t,
    };
    if !s.part.is_empty() {
        out.raw(b".");
    }
    match text {
        SectionText::Header => out.raw(b"HEADER"),
        SectionText::Text => out.raw(b"TEXT"),
        SectionText::Mime => out.raw(b"MIME"),
        SectionText::HeaderFields { not, fields } => {
            out.raw(if *not { b"HEADER.FIELDS.NOT (" as &[u8] } else { b"HEADER.FIELDS (" });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.sp();
                }
                out.astring(f.as_bytes(), false);
            }
            out.raw(b")")
        }
    };
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `dd-Mon-yyyy hh:mm:ss +0000` (RFC 9051 date-time), in UTC.
pub(crate) fn date_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = crate::proto::civil_from_days(days);
    format!("{:02}-{}-{:04} {:02}:{:02}:{:02} +0000", d, MONTHS[m as usize - 1], y, secs / 3600, secs / 60 % 60, secs % 60)
}

fn sets_seen(item: &FetchItem) -> bool {
    matches!(item, FetchItem::BodySection { peek: false, .. } | FetchItem::Binary { peek: false, .. })
}

pub fn run(mut m: InMailbox<'_>, tag: &str, set: &SequenceSet, items: &[FetchItem], uid: bool, mods: &FetchModifiers, out: &mut Out) -> Directive {
    let mut items = items.to_vec();
    // RFC 7162 3.2.4: with QRESYNC every FETCH response has the UID.
    if (uid || m.cx.enabled.qresync) && !items.contains(&FetchItem::Uid) {
        items.insert(0, FetchItem::Uid);
    }
    if mods.changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
        items.push(FetchItem::ModSeq);
    }
    if mods.vanished && !m.cx.enabled.qresync {
        return bad(out, tag, "VANISHED needs ENABLE QRESYNC first");
    }
    if items.contains(&FetchItem::ModSeq) {
        // RFC 7162 3.1: using MODSEQ turns CONDSTORE on.
        enable_condstore(&mut m, out);
    }
    // RFC 7162 3.2.6: the UIDs of the set expunged since CHANGEDSINCE.
    let vanished = match (mods.vanished, mods.changed_since, set) {
        (true, Some(since), SequenceSet::Ranges(r)) => Some((since, r.clone())),
        _ => None,
    };
    let c = Fetch {
        tag: tag.to_string(),
        walk: SetWalk::new(set, uid),
        items,
        changed_since: mods.changed_since,
        vanished,
        done: (None, "Fetch completed."),
        expunged: false,
        unknown_cte: false,
        seen_set: false,
        at: 0,
    };
    run_in_mailbox(c)
}

/// The second half of SELECT's QRESYNC parameter (RFC 7162 3.2.5.1):
/// `* VANISHED (EARLIER)` for the known UIDs expunged since `modseq`, then
/// FETCH (UID FLAGS MODSEQ) of those changed since, then the SELECT's
/// tagged OK with `code` and `text`.
pub(crate) fn resync(tag: &str, known: Ranges, modseq: u64, code: &'static str, text: &'static str) -> Directive {
    run_in_mailbox(Fetch {
        tag: tag.to_string(),
        walk: SetWalk::new(&SequenceSet::Ranges(known.clone()), true),
        items: vec![FetchItem::Uid, FetchItem::Flags, FetchItem::ModSeq],
        changed_since: Some(modseq),
        vanished: Some((modseq, known)),
        done: (Some(code), text),
        expunged: false,
        unknown_cte: false,
        seen_set: false,
        at: 0,
    })
}

/// The bytes an IMAP URL names in a message (RFC 4469 5, RFC 4467 6.3):
/// the message, or its section as `BODY.PEEK[section]<partial>` gives it.
pub(crate) fn url_data(mb: &Mailbox, m: &Msg, u: &ImapUrl) -> Option<Data> {
    let wanted = match &u.section {
        Some(s) => parse_url_section(s)?,
        None => Section { part: Vec::new(), text: None },
    };
    let data = section(mb, m, &wanted).ok()?;
    // PARTIAL without a length runs to the end.
    Some(data.window(u.partial.map(|(origin, len)| (origin, len.unwrap_or(u64::MAX)))))
}

/// One message's FETCH response outside any command: NOTIFY's MessageNew
/// with fetch attributes (RFC 5465 5.2). It never sets \Seen (a
/// notification changes nothing); a message that cannot be read is left
/// out, and logged.
pub(crate) fn unsolicited(sel: &mut Selected, uid: u32, items: &[FetchItem], rev2: bool, out: &mut Out) {
    let Ok(i) = sel.uids().binary_search(uid) else { return };
    let mut f = Fetch {
        tag: String::new(),
        walk: SetWalk::new(&SequenceSet::Saved, true),
        items: items.to_vec(),
        changed_since: None,
        vanished: None,
        done: (None, ""),
        expunged: false,
        unknown_cte: false,
        seen_set: false,
        at: 0,
    };
    if let Err(e) = f.one(sel, i as u32 + 1, uid, false, rev2, out) {
        tracing::warn!(uid, error = %e, "cannot read a new message for NOTIFY");
    }
}

/// Messages per slice at most, whatever their size.
const MESSAGES_PER_SLICE: usize = 4096;

/// A FETCH in progress: the messages left, walked lazily.
struct Fetch {
    tag: String,
    walk: SetWalk,
    items: Vec<FetchItem>,
    changed_since: Option<u64>,
    /// `* VANISHED (EARLIER)` to send first: the UIDs of this set
    /// expunged after this modseq (RFC 7162 3.2.5.1, 3.2.6).
    vanished: Option<(u64, Ranges)>,
    /// The tagged OK's code and text.
    done: (Option<&'static str>, &'static str),
    expunged: bool,
    unknown_cte: bool,
    seen_set: bool,
    /// Where in the mailbox's messages the last one fetched was: the next
    /// is looked for from there (`Mailbox::find_from`), a step instead of
    /// a binary search when the set ascends, as `1:*` does.
    at: usize,
}

impl MailboxCursor for Fetch {
    fn resume(&mut self, mut m: InMailbox<'_>, out: &mut Out) -> Progress {
        let resolved_now = match self.walk.ready(&mut m, out, &self.tag) {
            Err(p) => return p,
            Ok(s) => s.is_some(),
        };
        if let (true, Some(since)) = (resolved_now, self.changed_since) {
            // Only messages whose modseq moved past CHANGEDSINCE can answer
            // (RFC 7162 3.1.4): the mailbox's journal names them when it
            // reaches back that far, so the cost follows the changes, not
            // the mailbox's size.
            let changed = m.sel.mbox.borrow().flags_changed_since(since, |_| false);
            if let Some(changed) = changed {
                self.walk.narrow(&changed);
            }
        }
        if let Some((since, within)) = self.vanished.take() {
            let gone = vanished::since(&m.sel.mbox.borrow(), since, &within);
            let mut at = 0;
            while at < gone.len() {
                at += vanished::line(out, true, &gone[at..]);
            }
        }
        let rev2 = m.cx.enabled.rev2;
        let sel = &mut *m.sel;
        sel.condstore |= m.cx.enabled.condstore;
        let mark_seen = !sel.read_only && self.items.iter().any(sets_seen);
        if self.items.contains(&FetchItem::Flags) || mark_seen {
            sel.announce_flags(out, false);
        }
        let mut done = 0;
        while let Some((seq, u)) = self.walk.next() {
            if let Err(e) = self.one(sel, seq, u, mark_seen, rev2, out) {
                return Progress::Done(store_error(out, &self.tag, &e));
            }
            done += 1;
            if out.len() >= OUTPUT_BUDGET || done >= MESSAGES_PER_SLICE {
                return Progress::More;
            }
        }
        Progress::Done(self.finish(&m, out))
    }
}

impl Fetch {
    /// One message's FETCH response.
    fn one(&mut self, sel: &mut Selected, seq: u32, u: u32, mark_seen: bool, rev2: bool, out: &mut Out) -> Result<(), StoreError> {
        let found = sel.mbox.borrow().find_from(u, &mut self.at).copied();
        let Some(mut m) = found else {
            self.expunged = true;
            return Ok(());
        };
        if self.changed_since.is_some_and(|cs| m.modseq <= cs) {
            return Ok(());
        }
        let mut seen_now = false;
        if mark_seen && m.flags & F_SEEN == 0 {
            let r = sel.mbox.borrow_mut().set_flags(u, m.flags | F_SEEN, m.keywords);
            if let Some(modseq) = r? {
                m.flags |= F_SEEN;
                m.modseq = modseq;
                sel.reported(modseq);
                seen_now = true;
                self.seen_set = true;
            }
        }
        let mb = sel.mbox.borrow();
        let mut shown_flags = false;
        out.raw(b"* ").num(u64::from(seq)).raw(b" FETCH (");
        let mut first = true;
        for item in &self.items {
            if !first {
                out.sp();
            }
            first = false;
            let r: std::io::Result<()> = (|| {
                match item {
                    FetchItem::Flags => {
                        flags_item(out, &m, mb.keywords(), !rev2 && sel.is_recent(u));
                        shown_flags = true;
                    }
                    FetchItem::Uid => {
                        out.raw(b"UID ").num(u64::from(u));
                    }
                    FetchItem::ModSeq => {
                        out.raw(b"MODSEQ (").num(m.modseq).raw(b")");
                    }
                    FetchItem::InternalDate => {
                        out.raw(b"INTERNALDATE \"").str(&date_time(mb.location(&m).internal_date)).raw(b"\"");
                    }
                    FetchItem::Rfc822Size => {
                        out.raw(b"RFC822.SIZE ").num(mb.location(&m).length);
                    }
                    FetchItem::Envelope => with_cache(&mb, &m, |c| {
                        out.raw(b"ENVELOPE ").raw(c.envelope);
                    })?,
                    FetchItem::Body => with_cache(&mb, &m, |c| {
                        out.raw(b"BODY ").raw(c.body);
                    })?,
                    FetchItem::BodyStructure => with_cache(&mb, &m, |c| {
                        out.raw(b"BODYSTRUCTURE ").raw(c.bodystructure);
                    })?,
                    FetchItem::BodySection { section: sec, partial, legacy, .. } => {
                        match legacy {
                            Legacy::Rfc822 => out.raw(b"RFC822 "),
                            Legacy::Rfc822Header => out.raw(b"RFC822.HEADER "),
                            Legacy::Rfc822Text => out.raw(b"RFC822.TEXT "),
                            Legacy::None => {
                                out.raw(b"BODY[");
                                section_name(out, sec);
                                out.raw(b"]");
                                if let Some((o, _)) = partial {
                                    out.raw(b"<").num(*o).raw(b">");
                                }
                                out.sp()
                            }
                        };
                        let may_hold_nul = with_cache(&mb, &m, |c| c.has_nul)?;
                        section(&mb, &m, sec)?.window(*partial).write(out, false, may_hold_nul);
                    }
                    FetchItem::Binary { part, partial, .. } => {
                        let name: Vec<String> = part.iter().map(|n| n.to_string()).collect();
                        out.raw(b"BINARY[").str(&name.join(".")).raw(b"]");
                        if let Some((o, _)) = partial {
                            out.raw(b"<").num(*o).raw(b">");
                        }
                        out.sp();
                        match binary(&mb, &m, part)? {
                            Ok(d) => d.window(*partial).write(out, true, true),
                            Err(()) => {
                                self.unknown_cte = true;
                                out.nil();
                            }
                        }
                    }
                    FetchItem::SaveDate => {
                        out.raw(b"SAVEDATE \"").str(&date_time(mb.save_date(&m)?)).raw(b"\"");
                    }
                    FetchItem::EmailId | FetchItem::ThreadId => {
                        let msg = mb.message(&m)?;
                        let (email, thread) = with_cache(&mb, &m, |c| c.object_ids(msg.bytes()))?;
                        match item {
                            FetchItem::EmailId => out.raw(b"EMAILID (").str(&email).raw(b")"),
                            _ => out.raw(b"THREADID (").str(&thread).raw(b")"),
                        };
                    }
                    FetchItem::Preview(form) => {
                        let msg = mb.message(&m)?;
                        let text = with_cache(&mb, &m, |c| c.preview(msg.bytes()))?;
                        let (open, close): (&[u8], &[u8]) = match form {
                            PreviewForm::Rfc8970 => (b"PREVIEW ", b""),
                            PreviewForm::FuzzyPreview => (b"PREVIEW (FUZZY ", b")"),
                            PreviewForm::FuzzySnippet => (b"SNIPPET (FUZZY ", b")"),
                        };
                        out.raw(open).string(text.as_bytes(), rev2).raw(close);
                    }
                    FetchItem::BinarySize { part } => {
                        let name: Vec<String> = part.iter().map(|n| n.to_string()).collect();
                        out.raw(b"BINARY.SIZE[").str(&name.join(".")).raw(b"] ");
                        match binary(&mb, &m, part)? {
                            Ok(d) => {
                                out.num(d.bytes().len() as u64);
                            }
                            Err(()) => {
                                self.unknown_cte = true;
                                out.nil();
                            }
                        }
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                out.raw(b")\r\n");
                return Err(e.into());
            }
        }
        if seen_now && !self.items.contains(&FetchItem::Flags) {
            // RFC 9051 6.4.5: the \Seen set as a side effect is reported.
            out.sp();
            flags_item(out, &m, mb.keywords(), !rev2 && sel.is_recent(u));
        }
        out.raw(b")\r\n");
        drop(mb);
        // Another session's change shown here is not shown again at the end
        // (with CONDSTORE, only when its MODSEQ was shown too).
        if shown_flags && (!sel.condstore || self.items.contains(&FetchItem::ModSeq)) {
            sel.flags_shown(m.uid, m.modseq);
        }
        Ok(())
    }

    fn finish(&self, m: &InMailbox<'_>, out: &mut Out) -> Directive {
        if self.unknown_cte {
            return no(out, &self.tag, Some("UNKNOWN-CTE"), "A part has a content transfer encoding that cannot be decoded");
        }
        // Messages another session expunged are skipped; the command succeeds
        // for the rest and says why some are missing (RFC 9051 7.1, as RFC 2180
        // 4.1 allows; Dovecot answers the same way).
        let (code, text) = self.done;
        let code = if self.expunged { Some("EXPUNGEISSUED") } else { code };
        if self.seen_set {
            // \Seen was set: answered once that change is durable.
            return ok_when_durable(m.user.durable(&m.sel.mbox), &self.tag, code.map(str::to_string), text);
        }
        ok(&self.tag, code, text)
    }
}
