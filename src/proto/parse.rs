//! The command grammar of RFC 9051 section 9 (plus RFC 3501 forms and the
//! syntax of the extensions ringmail implements), over the tokens of one
//! complete command.
//!
//! It sees a command only once the decoder has all of it (lines and
//! literals), so it never waits, never reads, and needs no state between
//! commands. It does not decide whether a command is allowed: that is the
//! session's job. Every failure is a [`ParseError`], answered with BAD.

use super::command::*;
use super::scan::{Kind, Token};
use super::seqset::{SeqNum, SeqRange};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The tag, when the command got far enough to have one.
    pub tag: Option<String>,
    pub message: String,
}

type R<T> = Result<T, String>;

/// ID field/value pairs (RFC 2971).
type IdParams = Vec<(String, Option<String>)>;

/// Parses one complete command.
pub fn parse_command(buf: &[u8], tokens: &[Token], nesting_max: usize) -> Result<Command, ParseError> {
    let mut p = Parser::new(buf, tokens, nesting_max);
    let tag = match p.tag() {
        Ok(t) => t,
        Err(message) => return Err(ParseError { tag: None, message }),
    };
    match p.sp().and_then(|_| p.command_body()) {
        Ok(body) => Ok(Command { tag, body }),
        Err(message) => Err(ParseError { tag: Some(tag), message }),
    }
}

/// Reads just the tag of a command (for answering a command the decoder had
/// to reject as a whole, e.g. a literal that is too large).
pub fn parse_tag(buf: &[u8], tokens: &[Token]) -> Option<String> {
    Parser::new(buf, tokens, 0).tag().ok()
}

/// Recognises `tag APPEND mailbox [flags] [date-time] ` ahead of the message
/// literal (announced after `literal_gap` spaces), so the decoder can stream
/// that literal instead of buffering it. None when the tokens are not such a prefix.
pub fn parse_append_prefix(buf: &[u8], tokens: &[Token], literal_gap: u8) -> Option<Result<AppendHeader, ParseError>> {
    let mut p = Parser::new(buf, tokens, 4);
    let tag = p.tag().ok()?;
    p.sp().ok()?;
    let uid = match p.atom_upper().ok()?.as_str() {
        "APPEND" => None,
        "REPLACE" => Some(false),
        "UID" if p.sp().is_ok() && p.atom_upper().ok()? == "REPLACE" => Some(true),
        _ => return None,
    };
    let r = (|| -> R<Option<AppendHeader>> {
        let replace = uid.map(|uid| p.replace_target(uid)).transpose()?;
        p.sp()?;
        let mailbox = p.mailbox()?;
        if p.catenate_ahead() {
            // Read whole with its literals, as any command (`append_whole`).
            return Ok(None);
        }
        let (flags, date, utf8) = p.append_message(literal_gap, "APPEND arguments must be followed by the message literal")?;
        Ok(Some(AppendHeader { tag: String::new(), mailbox, flags, date, size: 0, binary: false, nonsync: false, replace, utf8 }))
    })();
    match r {
        Ok(Some(mut h)) => {
            h.tag = tag;
            Some(Ok(h))
        }
        Ok(None) => None,
        Err(message) => Some(Err(ParseError { tag: Some(tag), message })),
    }
}

/// The flags and date of a further MULTIAPPEND message (RFC 3502): the
/// rest of the line after a message literal, ` [flags] [date-time]`, up to
/// the next literal (tokenized without it; `literal_gap` is the spaces
/// before it).
pub fn parse_append_more(buf: &[u8], tokens: &[Token], literal_gap: u8) -> Result<(Vec<Flag>, Option<DateTime>, bool), String> {
    Parser::new(buf, tokens, 4).append_message(literal_gap, "Expected flags, a date or the next message literal")
}

struct Parser<'a> {
    buf: &'a [u8],
    toks: &'a [Token],
    i: usize,
    depth: usize,
    nesting_max: usize,
    /// `sp()` saw exactly one space before the next token.
    spaced: bool,
    /// Spaces at the very end of the command (before its CRLF).
    trailing: u8,
}

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

impl<'a> Parser<'a> {
    /// ` [flag-list] [date-time]`, each optional (RFC 9051 `append-opts`).
    fn append_opts(&mut self) -> R<(Vec<Flag>, Option<DateTime>)> {
        let mut flags = Vec::new();
        if self.peek_kind() == Some(Kind::LParen) {
            self.sp()?;
            flags = self.flag_list()?;
        }
        let mut date = None;
        if matches!(self.peek_kind(), Some(Kind::Quoted)) {
            self.sp()?;
            date = Some(self.date_time()?);
        }
        Ok((flags, date))
    }

    /// Whether CATENATE (RFC 4469) comes among the tokens left.
    fn catenate_ahead(&self) -> bool {
        self.toks[self.i..].iter().any(|&t| t.kind == Kind::Atom && self.text(t).eq_ignore_ascii_case(b"CATENATE"))
    }

    /// `APPEND mailbox 1*append-message` read whole (RFC 4469 5, with
    /// MULTIAPPEND's RFC 3502): each message's flags and date, then its
    /// literal or `CATENATE (` its TEXT literals and URLs `)`.
    fn append_whole(&mut self, replace: Option<Replace>) -> R<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while !self.at_end() {
            let (flags, date) = self.append_opts()?;
            self.sp()?;
            let parts = if self.peek_kind() == Some(Kind::Literal) {
                vec![CatPart::Text(self.string()?)]
            } else {
                let kind = self.atom_upper()?;
                self.sp()?;
                match kind.as_str() {
                    "UTF8" => vec![CatPart::Text(self.utf8_literal()?)],
                    "CATENATE" => self.catenate_parts()?,
                    _ => return Err("Expected a message literal, UTF8 or CATENATE".into()),
                }
            };
            messages.push(AppendWhole { flags, date, parts });
        }
        if messages.is_empty() {
            return Err("APPEND needs a message".into());
        }
        if replace.is_some() && messages.len() > 1 {
            return Err("REPLACE takes one message".into());
        }
        Ok(CommandBody::AppendWhole { mailbox, messages, replace })
    }

    /// `(TEXT literal URL "url" ...)` of CATENATE (RFC 4469 5), with UTF8
    /// parts (RFC 6855 4).
    fn catenate_parts(&mut self) -> R<Vec<CatPart>> {
        self.paren_list(false, |p| {
            let kind = p.atom_upper()?;
            p.sp()?;
            Ok(match kind.as_str() {
                "TEXT" if p.peek_kind() == Some(Kind::Literal) => CatPart::Text(p.string()?),
                "TEXT" => return Err("TEXT needs a literal".into()),
                "UTF8" => CatPart::Text(p.utf8_literal()?),
                "URL" => CatPart::Url(p.astring_utf8()?),
                _ => return Err(format!("Unknown CATENATE part {kind}")),
            })
        })
    }

    /// `(uidvalidity modseq [known-uids] [(seqs uids)])` after `QRESYNC `
    /// (RFC 7162 3.2.5).
    fn qresync_param(&mut self) -> R<Qresync> {
        self.lparen()?;
        let uidvalidity = u32::try_from(self.number()?).ok().filter(|&v| v > 0).ok_or_else(|| "Invalid UIDVALIDITY".to_string())?;
        self.sp()?;
        let modseq = self.number()?;
        let (mut known_uids, mut seq_match) = (None, None);
        if self.peek_kind() != Some(Kind::RParen) {
            self.sp()?;
            if self.peek_kind() != Some(Kind::LParen) {
                known_uids = Some(self.set_without_star()?);
                if self.peek_kind() != Some(Kind::RParen) {
                    self.sp()?;
                }
            }
            if self.peek_kind() == Some(Kind::LParen) {
                self.lparen()?;
                let seqs = self.set_without_star()?;
                self.sp()?;
                let uids = self.set_without_star()?;
                self.rparen()?;
                seq_match = Some((seqs, uids));
            }
        }
        self.rparen()?;
        Ok(Qresync { uidvalidity, modseq, known_uids, seq_match })
    }

    /// A sequence set in which `*` is not allowed (RFC 7162 known-uids).
    fn set_without_star(&mut self) -> R<Ranges> {
        match self.sequence_set()? {
            SequenceSet::Ranges(r) if !r.has_star() => Ok(r),
            _ => Err("Expected a set of numbers without * or $".into()),
        }
    }

    /// What follows PREVIEW or SNIPPET in a FETCH: ` (LAZY)` (RFC 8970 5),
    /// or the drafts' ` (FUZZY)` / ` (LAZY=FUZZY)`. A list of anything
    /// else is not theirs: the FETCH modifiers after a single item.
    fn preview_att(&mut self, snippet: bool) -> R<FetchItem> {
        let mut fuzzy = snippet;
        let next = self.toks.get(self.i + 1).filter(|t| t.kind == Kind::Atom).map(|&t| upper(self.text(t)));
        let ours = matches!(next.as_deref(), Some("LAZY" | "FUZZY" | "LAZY=FUZZY"));
        if ours && self.peek().is_some_and(|t| t.kind == Kind::LParen && t.gap == 1) {
            self.sp()?;
            self.paren_list(false, |p| {
                match p.atom_upper()?.as_str() {
                    "LAZY" => {}
                    "FUZZY" | "LAZY=FUZZY" => fuzzy = true,
                    m => return Err(format!("{m} is not a PREVIEW modifier")),
                }
                Ok(())
            })?;
        }
        Ok(FetchItem::Preview(match (snippet, fuzzy) {
            (true, _) => PreviewForm::FuzzySnippet,
            (false, true) => PreviewForm::FuzzyPreview,
            (false, false) => PreviewForm::Rfc8970,
        }))
    }

    /// ` [(option ...)] mailbox entries` of GETMETADATA (RFC 5464 5: the
    /// options come first, as errata 2785 and 2786 correct the examples).
    fn getmetadata(&mut self) -> R<CommandBody> {
        let (mut max_size, mut depth) = (None, MetadataDepth::Zero);
        self.sp()?;
        if self.peek_kind() == Some(Kind::LParen) {
            self.paren_list(false, |p| {
                let option = p.atom_upper()?;
                p.sp()?;
                match option.as_str() {
                    "MAXSIZE" => max_size = Some(p.number()?),
                    "DEPTH" => {
                        depth = match p.atom_upper()?.as_str() {
                            "0" => MetadataDepth::Zero,
                            "1" => MetadataDepth::One,
                            "INFINITY" => MetadataDepth::Infinity,
                            _ => return Err("DEPTH is 0, 1 or infinity".into()),
                        }
                    }
                    _ => return Err(format!("Unknown GETMETADATA option {option}")),
                }
                Ok(())
            })?;
            self.sp()?;
        }
        let mailbox = self.mailbox()?;
        self.sp()?;
        let entries = if self.peek_kind() == Some(Kind::LParen) { self.paren_list(false, Self::metadata_entry)? } else { vec![self.metadata_entry()?] };
        Ok(CommandBody::GetMetadata { mailbox, entries, max_size, depth })
    }

    /// A URLFETCH argument: a URL, or `(url [BINARY] [BODYPARTSTRUCTURE])`
    /// (RFC 5524 4).
    fn urlfetch_item(&mut self) -> R<UrlFetchItem> {
        if self.peek_kind() != Some(Kind::LParen) {
            return Ok(UrlFetchItem { url: self.astring_utf8()?, extended: false, binary: false, body_part_structure: false });
        }
        self.lparen()?;
        let mut item = UrlFetchItem { url: self.astring_utf8()?, extended: true, binary: false, body_part_structure: false };
        while self.peek_kind() != Some(Kind::RParen) {
            self.sp()?;
            match self.atom_upper()?.as_str() {
                "BINARY" => item.binary = true,
                "BODYPARTSTRUCTURE" => item.body_part_structure = true,
                other => return Err(format!("Unknown URLFETCH parameter {other}")),
            }
        }
        self.rparen()?;
        Ok(item)
    }

    /// ` [STATUS] event-group ...` of NOTIFY SET (RFC 5465 8).
    fn notify_set(&mut self) -> R<NotifySet> {
        let status = self.peek_kind() == Some(Kind::Atom);
        if status {
            self.sp()?;
            if self.atom_upper()? != "STATUS" {
                return Err("Expected STATUS or an event group".into());
            }
        }
        Ok(NotifySet { status, groups: self.spaced_items(Self::event_group)? })
    }

    /// `(filter-mailboxes events)`.
    fn event_group(&mut self) -> R<EventGroup> {
        self.lparen()?;
        let name = self.atom_upper()?;
        let filter = match name.as_str() {
            "SELECTED" => NotifyFilter::Selected,
            "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
            "INBOXES" => NotifyFilter::Inboxes,
            "PERSONAL" => NotifyFilter::Personal,
            "SUBSCRIBED" => NotifyFilter::Subscribed,
            "SUBTREE" | "MAILBOXES" => {
                self.sp()?;
                let boxes = if self.peek_kind() == Some(Kind::LParen) { self.paren_list(false, Self::mailbox)? } else { vec![self.mailbox()?] };
                if name == "SUBTREE" {
                    NotifyFilter::Subtree(boxes)
                } else {
                    NotifyFilter::Mailboxes(boxes)
                }
            }
            _ => return Err(format!("Unknown mailbox filter {name}")),
        };
        self.sp()?;
        let events = if self.peek_kind() == Some(Kind::LParen) {
            self.paren_list(false, Self::notify_event)?
        } else if self.atom_upper()? == "NONE" {
            Vec::new()
        } else {
            return Err("Expected a list of events or NONE".into());
        };
        self.rparen()?;
        Ok(EventGroup { filter, events })
    }

    /// An event; MessageNew may carry `(fetch-att ...)`.
    fn notify_event(&mut self) -> R<NotifyEvent> {
        let name = self.atom_upper()?;
        Ok(match name.as_str() {
            "MESSAGENEW" => {
                let mut items = Vec::new();
                if self.peek().is_some_and(|t| t.kind == Kind::LParen && t.gap == 1) {
                    self.sp()?;
                    items = self.paren_list(false, Self::fetch_att)?;
                }
                NotifyEvent::MessageNew(items)
            }
            "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
            "FLAGCHANGE" => NotifyEvent::FlagChange,
            "ANNOTATIONCHANGE" => NotifyEvent::AnnotationChange,
            "MAILBOXNAME" => NotifyEvent::MailboxName,
            "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
            "MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
            "SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
            _ => NotifyEvent::Other(name),
        })
    }

    /// An entry name (RFC 5464 3.2): under `/private` or `/shared`, no
    /// `//`, no trailing `/`, no wildcards, no control or 8-bit characters;
    /// lower-cased, as names are case-insensitive.
    fn metadata_entry(&mut self) -> R<String> {
        let raw = self.astring()?;
        let problem = if raw.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            Some("can't contain control or 8-bit characters")
        } else if raw.iter().any(|&b| b == b'*' || b == b'%') {
            Some("can't contain '*' or '%'")
        } else if raw.windows(2).any(|w| w == b"//") {
            Some("can't contain consecutive '/'")
        } else if raw.ends_with(b"/") {
            Some("can't end with '/'")
        } else {
            None
        };
        let name = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let rooted = ["/private", "/shared"].iter().any(|r| name.strip_prefix(r).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
        match problem {
            Some(p) => Err(format!("Entry name {p}")),
            None if !rooted => Err("Entry name must begin with /private or /shared".into()),
            None => Ok(name),
        }
    }

    /// `(` literal8 `)` after `UTF8 ` (RFC 6855 4): a message, or a
    /// CATENATE part, with UTF-8 header fields.
    fn utf8_literal(&mut self) -> R<Vec<u8>> {
        self.lparen()?;
        if self.peek_kind() != Some(Kind::Literal) {
            return Err("UTF8 needs a literal".into());
        }
        let data = self.string()?;
        self.rparen()?;
        Ok(data)
    }

    /// ` seq-number` or ` uid` of REPLACE / UID REPLACE (RFC 8508 5): one
    /// number, or `*`.
    fn replace_target(&mut self, uid: bool) -> R<Replace> {
        self.sp()?;
        let a = self.atom()?;
        let message = match a {
            b"*" => parse_sequence_set(a),
            _ => parse_number(a).and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0).map(SequenceSet::single),
        }
        .ok_or_else(|| "Expected a message number".to_string())?;
        Ok(Replace { message, uid })
    }

    /// ` [flag-list] [date-time]` before an APPEND message's literal, which
    /// must follow after one space (else `not_last`).
    /// Also whether the literal is wrapped as `UTF8 (` literal8 `)` (RFC
    /// 6855 4; its `)` follows the literal).
    fn append_message(&mut self, literal_gap: u8, not_last: &str) -> R<(Vec<Flag>, Option<DateTime>, bool)> {
        let (flags, date) = self.append_opts()?;
        let utf8 = self.peek().is_some_and(|t| t.kind == Kind::Atom && self.text(t).eq_ignore_ascii_case(b"UTF8"));
        if utf8 {
            self.sp()?;
            self.atom()?;
            self.sp()?;
            self.lparen()?;
        }
        if !self.at_end() {
            return Err(not_last.into());
        }
        if literal_gap != u8::from(!utf8) {
            return Err(if utf8 { "Expected the literal right after UTF8 (" } else { "Expected a single space before the message literal" }.into());
        }
        Ok((flags, date, utf8))
    }

    fn new(buf: &'a [u8], toks: &'a [Token], nesting_max: usize) -> Self {
        let (toks, trailing) = match toks.split_last() {
            Some((last, rest)) if last.kind == Kind::Eol => (rest, last.gap),
            _ => (toks, 0),
        };
        Parser { buf, toks, i: 0, depth: 0, nesting_max, spaced: false, trailing }
    }

    fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn peek(&self) -> Option<Token> {
        self.toks.get(self.i).copied()
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn text(&self, t: Token) -> &'a [u8] {
        &self.buf[t.range()]
    }

    /// Consumes the next token, which must be preceded by exactly the spaces
    /// the grammar allows there: one after `sp()`, none otherwise.
    fn next(&mut self) -> R<Token> {
        let t = self.peek().ok_or_else(|| "Missing arguments".to_string())?;
        let want = u8::from(self.spaced);
        if t.gap != want {
            return Err(if want == 0 { "Unexpected space".to_string() } else { "Expected a single space".to_string() });
        }
        self.spaced = false;
        self.i += 1;
        Ok(t)
    }

    fn expect(&mut self, kind: Kind, what: &str) -> R<Token> {
        match self.peek() {
            Some(t) if t.kind == kind => self.next(),
            Some(_) => Err(format!("Expected {what}")),
            None => Err(format!("Missing {what}")),
        }
    }

    /// Exactly one space before the next argument (RFC 9051 9, rule 2).
    fn sp(&mut self) -> R<()> {
        match self.peek() {
            None if self.trailing > 0 => Err("Missing arguments after the space".into()),
            None => Err("Missing arguments".into()),
            Some(t) if t.gap == 1 => {
                self.spaced = true;
                Ok(())
            }
            Some(_) => Err("Expected a single space".into()),
        }
    }

    fn lparen(&mut self) -> R<()> {
        self.expect(Kind::LParen, "'('")?;
        self.depth += 1;
        if self.depth > self.nesting_max {
            return Err("Too deeply nested".into());
        }
        Ok(())
    }

    fn rparen(&mut self) -> R<()> {
        self.expect(Kind::RParen, "')'")?;
        self.depth -= 1;
        Ok(())
    }

    fn end(&self) -> R<()> {
        if !self.at_end() {
            Err("Unexpected extra arguments".into())
        } else if self.trailing > 0 {
            Err("Unexpected space at the end of the command".into())
        } else {
            Ok(())
        }
    }

    fn tag(&mut self) -> R<String> {
        let t = self.expect(Kind::Atom, "a tag")?;
        let s = self.text(t);
        if s.iter().any(|&b| matches!(b, b'+' | b'%' | b'*' | b'\\') || b >= 0x80) {
            return Err("Invalid tag".into());
        }
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn atom(&mut self) -> R<&'a [u8]> {
        let t = self.expect(Kind::Atom, "an atom")?;
        Ok(self.text(t))
    }

    fn atom_upper(&mut self) -> R<String> {
        self.atom().map(upper)
    }

    fn unescape(&self, t: Token) -> Vec<u8> {
        let s = self.text(t);
        if t.kind == Kind::Quoted {
            return s.to_vec();
        }
        let mut out = Vec::with_capacity(s.len());
        let mut it = s.iter();
        while let Some(&b) = it.next() {
            if b == b'\\' {
                if let Some(&e) = it.next() {
                    out.push(e);
                }
            } else {
                out.push(b);
            }
        }
        out
    }

    /// `string`: quoted or literal.
    fn string(&mut self) -> R<Vec<u8>> {
        let t = self.next()?;
        match t.kind {
            Kind::Quoted | Kind::QuotedEscaped => Ok(self.unescape(t)),
            Kind::Literal => Ok(self.text(t).to_vec()),
            _ => Err("Expected a string".into()),
        }
    }

    /// `astring`: atom (with `]` allowed) or string.
    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek_kind() {
            Some(Kind::Atom) => Ok(self.atom()?.to_vec()),
            Some(_) => self.string(),
            None => Err("Missing argument".into()),
        }
    }

    fn astring_utf8(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).map_err(|_| "Invalid UTF-8".to_string())
    }

    fn nil_or_string(&mut self) -> R<Option<Vec<u8>>> {
        if let Some(t) = self.peek() {
            if t.kind == Kind::Atom && self.text(t).eq_ignore_ascii_case(b"NIL") {
                self.next()?;
                return Ok(None);
            }
        }
        self.string().map(Some)
    }

    fn mailbox(&mut self) -> R<Mailbox> {
        self.astring().map(Mailbox)
    }

    /// `list-mailbox`: list-chars (wildcards allowed) or string.
    fn list_mailbox(&mut self) -> R<Vec<u8>> {
        self.astring()
    }

    fn number(&mut self) -> R<u64> {
        let a = self.atom()?;
        parse_number(a).ok_or_else(|| "Expected a number".into())
    }

    fn sequence_set(&mut self) -> R<SequenceSet> {
        let a = self.atom()?;
        parse_sequence_set(a).ok_or_else(|| "Invalid sequence set".into())
    }

    fn flag(&mut self) -> R<Flag> {
        let a = self.atom()?;
        let s = std::str::from_utf8(a).map_err(|_| "Invalid flag".to_string())?;
        let body = s.strip_prefix('\\').unwrap_or(s);
        if body.is_empty() || body.bytes().any(|b| matches!(b, b'%' | b'*' | b']' | b'\\') || b >= 0x80) {
            if s == "\\*" {
                return Err("\\* is not a flag".into());
            }
            return Err("Invalid flag".into());
        }
        Ok(Flag::parse(s))
    }

    /// ` item` once or more, to the end of the command.
    fn spaced_items<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let mut v = Vec::new();
        loop {
            self.sp()?;
            v.push(item(self)?);
            if self.at_end() {
                return Ok(v);
            }
        }
    }

    /// `(item SP item ...)`, each item read by `item`; `()` only when
    /// `empty_ok`.
    fn paren_list<T>(&mut self, empty_ok: bool, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.lparen()?;
        let mut v = Vec::new();
        if !(empty_ok && self.peek_kind() == Some(Kind::RParen)) {
            loop {
                v.push(item(self)?);
                if self.peek_kind() == Some(Kind::RParen) {
                    break;
                }
                self.sp()?;
            }
        }
        self.rparen()?;
        Ok(v)
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.paren_list(true, Self::flag)
    }

    /// A parenthesised, space-separated list of atoms, upper-cased.
    fn atom_list(&mut self) -> R<Vec<String>> {
        self.paren_list(true, Self::atom_upper)
    }

    fn date(&mut self) -> R<Date> {
        let t = self.next()?;
        let s = match t.kind {
            Kind::Atom | Kind::Quoted => self.text(t),
            _ => return Err("Expected a date".into()),
        };
        parse_date(s).ok_or_else(|| "Invalid date".into())
    }

    fn date_time(&mut self) -> R<DateTime> {
        let t = self.expect(Kind::Quoted, "a date-time")?;
        parse_date_time(self.text(t)).ok_or_else(|| "Invalid date-time".into())
    }

    fn command_body(&mut self) -> R<CommandBody> {
        let name = self.atom_upper()?;
        let body = match name.as_str() {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "COMPRESS" => {
                self.sp()?;
                CommandBody::Compress(self.atom_upper()?)
            }
            "GETQUOTA" => {
                self.sp()?;
                CommandBody::GetQuota(self.astring()?)
            }
            "GETQUOTAROOT" => {
                self.sp()?;
                CommandBody::GetQuotaRoot(self.mailbox()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring()?;
                self.sp()?;
                CommandBody::SetQuota { root, limits: self.quota_limits()? }
            }
            "GETMETADATA" => self.getmetadata()?,
            "GENURLAUTH" => CommandBody::GenUrlAuth(self.spaced_items(|p| {
                let url = p.astring_utf8()?;
                p.sp()?;
                Ok((url, p.atom_upper()?))
            })?),
            "RESETKEY" => {
                if self.at_end() {
                    CommandBody::ResetKey(None)
                } else {
                    self.sp()?;
                    let mailbox = self.mailbox()?;
                    let mut mechanisms = Vec::new();
                    while !self.at_end() {
                        self.sp()?;
                        mechanisms.push(self.atom_upper()?);
                    }
                    CommandBody::ResetKey(Some((mailbox, mechanisms)))
                }
            }
            "URLFETCH" => CommandBody::UrlFetch(self.spaced_items(Self::urlfetch_item)?),
            "NOTIFY" => {
                self.sp()?;
                match self.atom_upper()?.as_str() {
                    "NONE" => CommandBody::Notify(None),
                    "SET" => CommandBody::Notify(Some(self.notify_set()?)),
                    _ => return Err("NOTIFY is followed by SET or NONE".into()),
                }
            }
            "SETMETADATA" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let values = self.paren_list(false, |p| {
                    let entry = p.metadata_entry()?;
                    p.sp()?;
                    Ok((entry, p.nil_or_string()?))
                })?;
                CommandBody::SetMetadata { mailbox, values }
            }
            "EXPUNGE" => CommandBody::Expunge { uids: None },
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                CommandBody::Login { user, password }
            }
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.atom_upper()?;
                let initial = if self.at_end() {
                    None
                } else {
                    self.sp()?;
                    Some(self.atom()?.to_vec())
                };
                CommandBody::Authenticate { mechanism, initial }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while !self.at_end() {
                    self.sp()?;
                    caps.push(self.atom_upper()?);
                }
                if caps.is_empty() {
                    return Err("ENABLE needs at least one capability".into());
                }
                CommandBody::Enable(caps)
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut params = SelectParams::default();
                if !self.at_end() {
                    self.sp()?;
                    self.paren_list(true, |p| {
                        let name = p.atom_upper()?;
                        match name.as_str() {
                            "CONDSTORE" => params.condstore = true,
                            "QRESYNC" => {
                                p.sp()?;
                                params.qresync = Some(p.qresync_param()?);
                            }
                            _ => return Err(format!("Unknown select parameter {name}")),
                        }
                        Ok(())
                    })?;
                }
                CommandBody::Select { mailbox, read_only: name == "EXAMINE", params }
            }
            "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
                self.sp()?;
                let m = self.mailbox()?;
                match name.as_str() {
                    "CREATE" => CommandBody::Create(m, self.create_params()?),
                    "DELETE" => CommandBody::Delete(m),
                    "SUBSCRIBE" => CommandBody::Subscribe(m),
                    _ => CommandBody::Unsubscribe(m),
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                CommandBody::Rename { from, to }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                CommandBody::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                CommandBody::Status { mailbox, items }
            }
            "ID" => {
                self.sp()?;
                CommandBody::Id(self.id_params()?)
            }
            "COPY" | "MOVE" | "FETCH" | "STORE" | "SEARCH" | "SORT" | "THREAD" => self.selected_command(&name, false)?,
            "CANCELUPDATE" => CommandBody::CancelUpdate(self.spaced_items(Self::astring_utf8)?),
            "UID" => {
                self.sp()?;
                let sub = self.atom_upper()?;
                match sub.as_str() {
                    "COPY" | "MOVE" | "FETCH" | "STORE" | "SEARCH" | "SORT" | "THREAD" => self.selected_command(&sub, true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        CommandBody::Expunge { uids: Some(self.sequence_set()?) }
                    }
                    "REPLACE" => {
                        let r = self.replace_target(true)?;
                        self.append_whole(Some(r))?
                    }
                    _ => return Err(format!("Unknown UID command {sub}")),
                }
            }
            "APPEND" => self.append_whole(None)?,
            "REPLACE" => {
                let r = self.replace_target(false)?;
                self.append_whole(Some(r))?
            }
            _ => return Err("Unknown command".into()),
        };
        self.end()?;
        Ok(body)
    }

    fn selected_command(&mut self, name: &str, uid: bool) -> R<CommandBody> {
        Ok(match name {
            "COPY" | "MOVE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                self.sp()?;
                let mailbox = self.mailbox()?;
                if name == "COPY" {
                    CommandBody::Copy { set, mailbox, uid }
                } else {
                    CommandBody::Move { set, mailbox, uid }
                }
            }
            "FETCH" => {
                self.sp()?;
                let set = self.sequence_set()?;
                self.sp()?;
                let items = self.fetch_items()?;
                let mut modifiers = FetchModifiers::default();
                if !self.at_end() {
                    self.sp()?;
                    self.paren_list(false, |p| {
                        let m = p.atom_upper()?;
                        match m.as_str() {
                            "CHANGEDSINCE" => {
                                p.sp()?;
                                modifiers.changed_since = Some(p.number()?);
                                Ok(())
                            }
                            "VANISHED" => {
                                modifiers.vanished = true;
                                Ok(())
                            }
                            _ => Err(format!("Unknown FETCH modifier {m}")),
                        }
                    })?;
                }
                // RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE.
                if modifiers.vanished && (!uid || modifiers.changed_since.is_none()) {
                    return Err("VANISHED needs UID FETCH with CHANGEDSINCE".into());
                }
                CommandBody::Fetch { set, items, uid, modifiers }
            }
            "STORE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                self.sp()?;
                let mut unchanged_since = None;
                if self.peek_kind() == Some(Kind::LParen) {
                    self.lparen()?;
                    let m = self.atom_upper()?;
                    if m != "UNCHANGEDSINCE" {
                        return Err(format!("Unknown STORE modifier {m}"));
                    }
                    self.sp()?;
                    unchanged_since = Some(self.number()?);
                    self.rparen()?;
                    self.sp()?;
                }
                let action = self.atom_upper()?;
                let (op, rest) = match action.as_bytes().first() {
                    Some(b'+') => (StoreOp::Add, &action[1..]),
                    Some(b'-') => (StoreOp::Remove, &action[1..]),
                    _ => (StoreOp::Replace, &action[..]),
                };
                let silent = match rest {
                    "FLAGS" => false,
                    "FLAGS.SILENT" => true,
                    _ => return Err("Expected FLAGS, +FLAGS or -FLAGS".into()),
                };
                self.sp()?;
                let flags = if self.peek_kind() == Some(Kind::LParen) {
                    self.flag_list()?
                } else {
                    let mut v = vec![self.flag()?];
                    while !self.at_end() {
                        self.sp()?;
                        v.push(self.flag()?);
                    }
                    v
                };
                CommandBody::Store { set, op, silent, flags, uid, unchanged_since }
            }
            "SORT" => self.sort(uid)?,
            "THREAD" => self.thread(uid)?,
            _ => self.search(uid)?,
        })
    }

    fn list(&mut self) -> R<CommandBody> {
        self.sp()?;
        let mut args = ListArgs {
            reference: Mailbox(Vec::new()),
            patterns: Vec::new(),
            select_subscribed: false,
            select_recursive: false,
            select_special_use: false,
            return_subscribed: false,
            return_children: false,
            return_special_use: false,
            return_status: None,
            extended: false,
        };
        if self.peek_kind() == Some(Kind::LParen) {
            args.extended = true;
            for o in self.atom_list()? {
                match o.as_str() {
                    "SUBSCRIBED" => args.select_subscribed = true,
                    "RECURSIVEMATCH" => args.select_recursive = true,
                    "SPECIAL-USE" => args.select_special_use = true,
                    "REMOTE" => {}
                    _ => return Err(format!("Unknown LIST selection option {o}")),
                }
            }
            if args.select_recursive && !args.select_subscribed && !args.select_special_use {
                // RFC 5258 3: RECURSIVEMATCH alone is a syntax error.
                return Err("RECURSIVEMATCH needs another selection option".into());
            }
            self.sp()?;
        }
        args.reference = self.mailbox()?;
        self.sp()?;
        if self.peek_kind() == Some(Kind::LParen) {
            args.extended = true;
            args.patterns = self.paren_list(false, Self::list_mailbox)?;
        } else {
            args.patterns.push(self.list_mailbox()?);
        }
        if !self.at_end() {
            self.sp()?;
            if self.atom_upper()? != "RETURN" {
                return Err("Expected RETURN".into());
            }
            args.extended = true;
            self.sp()?;
            self.lparen()?;
            while self.peek_kind() != Some(Kind::RParen) {
                let o = self.atom_upper()?;
                match o.as_str() {
                    "SUBSCRIBED" => args.return_subscribed = true,
                    "CHILDREN" => args.return_children = true,
                    "SPECIAL-USE" => args.return_special_use = true,
                    "STATUS" => {
                        self.sp()?;
                        args.return_status = Some(self.status_items()?);
                    }
                    _ => return Err(format!("Unknown LIST return option {o}")),
                }
                if self.peek_kind() != Some(Kind::RParen) {
                    self.sp()?;
                }
            }
            self.rparen()?;
        }
        Ok(CommandBody::List(args))
    }

    /// RFC 4466 create-params after CREATE's mailbox; of them only `USE
    /// (attr ...)` (RFC 6154 3, CREATE-SPECIAL-USE). Its attributes.
    fn create_params(&mut self) -> R<Vec<String>> {
        let mut uses = Vec::new();
        if self.at_end() {
            return Ok(uses);
        }
        self.sp()?;
        let params = self.paren_list(false, |p| {
            let param = p.atom_upper()?;
            if param != "USE" {
                return Err(format!("Unknown CREATE parameter {param}"));
            }
            p.sp()?;
            p.atom_list()
        })?;
        uses.extend(params.into_iter().flatten());
        Ok(uses)
    }

    /// `(resource limit ...)` of SETQUOTA (RFC 9208 7: setquota-list).
    fn quota_limits(&mut self) -> R<Vec<(String, u64)>> {
        self.paren_list(true, |p| {
            let resource = p.atom_upper()?;
            p.sp()?;
            Ok((resource, p.number()?))
        })
    }

    fn status_items(&mut self) -> R<Vec<StatusItem>> {
        let names = self.atom_list()?;
        if names.is_empty() {
            return Err("STATUS needs at least one item".into());
        }
        names
            .iter()
            .map(|n| {
                Ok(match n.as_str() {
                    "MESSAGES" => StatusItem::Messages,
                    "UIDNEXT" => StatusItem::UidNext,
                    "UIDVALIDITY" => StatusItem::UidValidity,
                    "UNSEEN" => StatusItem::Unseen,
                    "DELETED" => StatusItem::Deleted,
                    "SIZE" => StatusItem::Size,
                    "RECENT" => StatusItem::Recent,
                    "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                    "DELETED-STORAGE" => StatusItem::DeletedStorage,
                    "MAILBOXID" => StatusItem::MailboxId,
                    _ => return Err(format!("Unknown STATUS item {n}")),
                })
            })
            .collect()
    }

    fn id_params(&mut self) -> R<Option<IdParams>> {
        if self.peek_kind() == Some(Kind::Atom) {
            if self.atom_upper()? == "NIL" {
                return Ok(None);
            }
            return Err("Expected NIL or a parameter list".into());
        }
        self.lparen()?;
        let mut v = Vec::new();
        while self.peek_kind() != Some(Kind::RParen) {
            if !v.is_empty() {
                self.sp()?;
            }
            let k = String::from_utf8_lossy(&self.string()?).into_owned();
            self.sp()?;
            let val = self.nil_or_string()?.map(|b| String::from_utf8_lossy(&b).into_owned());
            v.push((k, val));
            // RFC 2971 3.3: at most 30 field-value pairs.
            if v.len() > 30 {
                return Err("Too many ID parameters".into());
            }
        }
        self.rparen()?;
        Ok(Some(v))
    }

    fn fetch_items(&mut self) -> R<Vec<FetchItem>> {
        if self.peek_kind() == Some(Kind::LParen) {
            return self.paren_list(false, Self::fetch_att);
        }
        // A single item or a macro (RFC 9051 6.4.5).
        if let Some(t) = self.peek() {
            if t.kind == Kind::Atom {
                let m = upper(self.text(t));
                let macro_items = match m.as_str() {
                    "ALL" => Some(vec![FetchItem::Flags, FetchItem::InternalDate, FetchItem::Rfc822Size, FetchItem::Envelope]),
                    "FAST" => Some(vec![FetchItem::Flags, FetchItem::InternalDate, FetchItem::Rfc822Size]),
                    "FULL" => Some(vec![FetchItem::Flags, FetchItem::InternalDate, FetchItem::Rfc822Size, FetchItem::Envelope, FetchItem::Body]),
                    _ => None,
                };
                if let Some(items) = macro_items {
                    self.next()?;
                    return Ok(items);
                }
            }
        }
        Ok(vec![self.fetch_att()?])
    }

    fn fetch_att(&mut self) -> R<FetchItem> {
        let raw = self.atom()?;
        let up = upper(raw);
        if up == "PREVIEW" || up == "SNIPPET" {
            return self.preview_att(up == "SNIPPET");
        }
        let simple = match up.as_str() {
            "FLAGS" => Some(FetchItem::Flags),
            "INTERNALDATE" => Some(FetchItem::InternalDate),
            "RFC822.SIZE" => Some(FetchItem::Rfc822Size),
            "ENVELOPE" => Some(FetchItem::Envelope),
            "BODY" => Some(FetchItem::Body),
            "BODYSTRUCTURE" => Some(FetchItem::BodyStructure),
            "UID" => Some(FetchItem::Uid),
            "MODSEQ" => Some(FetchItem::ModSeq),
            "EMAILID" => Some(FetchItem::EmailId),
            "THREADID" => Some(FetchItem::ThreadId),
            "SAVEDATE" => Some(FetchItem::SaveDate),
            "RFC822" => Some(FetchItem::BodySection { section: Section::default(), partial: None, peek: false, legacy: Legacy::Rfc822 }),
            "RFC822.HEADER" => Some(FetchItem::BodySection {
                section: Section { part: vec![], text: Some(SectionText::Header) },
                partial: None,
                peek: true,
                legacy: Legacy::Rfc822Header,
            }),
            "RFC822.TEXT" => Some(FetchItem::BodySection {
                section: Section { part: vec![], text: Some(SectionText::Text) },
                partial: None,
                peek: false,
                legacy: Legacy::Rfc822Text,
            }),
            _ => None,
        };
        if let Some(item) = simple {
            return Ok(item);
        }
        let open = up.find('[').ok_or_else(|| format!("Unknown FETCH item {up}"))?;
        let (name, rest) = up.split_at(open);
        let rest = &rest[1..];
        match name {
            "BODY" | "BODY.PEEK" => {
                let (section, tail) = self.section(rest)?;
                let partial = parse_partial(&tail)?;
                Ok(FetchItem::BodySection { section, partial, peek: name == "BODY.PEEK", legacy: Legacy::None })
            }
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                let close = rest.find(']').ok_or("Expected ']'")?;
                let part = parse_part_path(&rest[..close]).ok_or("Invalid section-binary")?;
                let partial = parse_partial(&rest[close + 1..])?;
                if name == "BINARY.SIZE" {
                    if partial.is_some() {
                        return Err("BINARY.SIZE takes no partial".into());
                    }
                    Ok(FetchItem::BinarySize { part })
                } else {
                    Ok(FetchItem::Binary { part, partial, peek: name == "BINARY.PEEK" })
                }
            }
            _ => Err(format!("Unknown FETCH item {up}")),
        }
    }

    /// Parses a section spec starting after `[` in the current atom (already
    /// upper-cased in `rest`); for HEADER.FIELDS it continues over the header
    /// list tokens and the atom that starts with `]`. Returns the section and
    /// what follows `]` (the partial, if any).
    fn section(&mut self, rest: &str) -> R<(Section, String)> {
        if let Some(close) = rest.find(']') {
            let spec = &rest[..close];
            let section = parse_section_spec(spec, None)?;
            return Ok((section, rest[close + 1..].to_string()));
        }
        // `HEADER.FIELDS` or `HEADER.FIELDS.NOT` with a header list after SP.
        self.sp()?;
        let fields = self.paren_list(false, |p| {
            let f = p.astring_utf8()?.to_ascii_uppercase();
            if f.is_empty() || f.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
                return Err("Invalid header field name".into());
            }
            Ok(f)
        })?;
        let close = upper(self.atom()?);
        let tail = close.strip_prefix(']').ok_or("Expected ']'")?.to_string();
        Ok((parse_section_spec(rest, Some(fields))?, tail))
    }

    fn search(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let ret = self.search_return()?;
        let mut charset = None;
        if let Some(t) = self.peek() {
            if t.kind == Kind::Atom && self.text(t).eq_ignore_ascii_case(b"CHARSET") {
                self.next()?;
                self.sp()?;
                charset = Some(upper(&self.astring()?));
                self.sp()?;
            }
        }
        let key = self.search_keys()?;
        Ok(CommandBody::Search { ret, charset, key, uid })
    }

    /// `RETURN (...)` of SEARCH (RFC 4731, RFC 5267) and SORT (ESORT), with
    /// the space after it.
    fn search_return(&mut self) -> R<Option<Vec<SearchReturn>>> {
        match self.peek() {
            Some(t) if t.kind == Kind::Atom && self.text(t).eq_ignore_ascii_case(b"RETURN") => {}
            _ => return Ok(None),
        }
        self.next()?;
        self.sp()?;
        let opts = self.atom_list()?;
        let mut v = Vec::new();
        let mut it = opts.iter();
        while let Some(o) = it.next() {
            let opt = match o.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" => SearchReturn::Save,
                "UPDATE" => SearchReturn::Update,
                "CONTEXT" => SearchReturn::Context,
                "PARTIAL" => {
                    // partial-range = nz-number ":" nz-number, either order.
                    let range = it.next().ok_or("PARTIAL range missing")?;
                    let (a, b) = range.split_once(':').ok_or("PARTIAL range broken")?;
                    let num = |s: &str| s.parse::<u32>().ok().filter(|&n| n > 0);
                    let (Some(a), Some(b)) = (num(a), num(b)) else { return Err("PARTIAL range broken".into()) };
                    if v.iter().any(|o| matches!(o, SearchReturn::Partial(..))) {
                        return Err("PARTIAL can be used only once".into());
                    }
                    SearchReturn::Partial(a.min(b), a.max(b))
                }
                _ => return Err(format!("Unknown SEARCH return option {o}")),
            };
            if !v.contains(&opt) {
                v.push(opt);
            }
        }
        if v.contains(&SearchReturn::All) && v.iter().any(|o| matches!(o, SearchReturn::Partial(..))) {
            return Err("PARTIAL conflicts with ALL".into());
        }
        self.sp()?;
        Ok(Some(v))
    }

    /// One or more search keys to the end of the line, as one key.
    fn search_keys(&mut self) -> R<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while !self.at_end() {
            self.sp()?;
            keys.push(self.search_key()?);
        }
        Ok(if keys.len() == 1 { keys.pop().expect("one key") } else { SearchKey::And(keys) })
    }

    /// SORT (RFC 5256 section 5, RFC 5267 ESORT, RFC 5957 SORT=DISPLAY).
    fn sort(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let ret = self.search_return()?;
        let names = self.atom_list()?;
        let mut criteria = Vec::new();
        let mut reverse = false;
        for n in names {
            let key = match n.as_str() {
                "REVERSE" if !reverse => {
                    reverse = true;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                _ => return Err(format!("Unknown sort criterion {n}")),
            };
            criteria.push(SortCriterion { key, reverse });
            reverse = false;
        }
        if reverse || criteria.is_empty() {
            return Err("Invalid sort criteria".into());
        }
        self.sp()?;
        let charset = upper(&self.astring()?);
        self.sp()?;
        let key = self.search_keys()?;
        Ok(CommandBody::Sort { ret, criteria, charset, key, uid })
    }

    /// THREAD (RFC 5256 section 5).
    fn thread(&mut self, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let algorithm = match self.atom_upper()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            "REFS" => ThreadAlgorithm::Refs,
            a => return Err(format!("Unknown thread algorithm {a}")),
        };
        self.sp()?;
        let charset = upper(&self.astring()?);
        self.sp()?;
        let key = self.search_keys()?;
        Ok(CommandBody::Thread { algorithm, charset, key, uid })
    }

    fn search_key(&mut self) -> R<SearchKey> {
        if self.peek_kind() == Some(Kind::LParen) {
            self.lparen()?;
            let mut keys = vec![self.search_key()?];
            while self.peek_kind() != Some(Kind::RParen) {
                self.sp()?;
                keys.push(self.search_key()?);
            }
            self.rparen()?;
            return Ok(if keys.len() == 1 { keys.pop().expect("one key") } else { SearchKey::And(keys) });
        }
        let raw = self.atom()?;
        if raw[0].is_ascii_digit() || raw[0] == b'*' || raw[0] == b'$' {
            return parse_sequence_set(raw).map(SearchKey::SequenceSet).ok_or_else(|| "Invalid sequence set".into());
        }
        let k = upper(raw);
        let header = |p: &mut Self, name: &str| -> R<SearchKey> {
            p.sp()?;
            Ok(SearchKey::Header(name.to_string(), p.astring()?))
        };
        Ok(match k.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Flag(Flag::Answered),
            "DELETED" => SearchKey::Flag(Flag::Deleted),
            "DRAFT" => SearchKey::Flag(Flag::Draft),
            "FLAGGED" => SearchKey::Flag(Flag::Flagged),
            "SEEN" => SearchKey::Flag(Flag::Seen),
            "RECENT" => SearchKey::Recent,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "UNANSWERED" => SearchKey::NotFlag(Flag::Answered),
            "UNDELETED" => SearchKey::NotFlag(Flag::Deleted),
            "UNDRAFT" => SearchKey::NotFlag(Flag::Draft),
            "UNFLAGGED" => SearchKey::NotFlag(Flag::Flagged),
            "UNSEEN" => SearchKey::NotFlag(Flag::Seen),
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let f = self.flag()?;
                if !matches!(f, Flag::Keyword(_)) {
                    return Err("KEYWORD takes a keyword, not a system flag".into());
                }
                if k == "KEYWORD" {
                    SearchKey::Flag(f)
                } else {
                    SearchKey::NotFlag(f)
                }
            }
            "BCC" => header(self, "BCC")?,
            "CC" => header(self, "CC")?,
            "FROM" => header(self, "FROM")?,
            "TO" => header(self, "TO")?,
            "SUBJECT" => header(self, "SUBJECT")?,
            "HEADER" => {
                self.sp()?;
                let name = self.astring_utf8()?;
                header(self, &name)?
            }
            "BODY" => {
                self.sp()?;
                SearchKey::Body(self.astring()?)
            }
            "TEXT" => {
                self.sp()?;
                SearchKey::Text(self.astring()?)
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" | "SAVEDBEFORE" | "SAVEDON" | "SAVEDSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match k.as_str() {
                    "BEFORE" => SearchKey::Before(d),
                    "ON" => SearchKey::On(d),
                    "SINCE" => SearchKey::Since(d),
                    "SENTBEFORE" => SearchKey::SentBefore(d),
                    "SENTON" => SearchKey::SentOn(d),
                    "SENTSINCE" => SearchKey::SentSince(d),
                    "SAVEDBEFORE" => SearchKey::SavedBefore(d),
                    "SAVEDON" => SearchKey::SavedOn(d),
                    _ => SearchKey::SavedSince(d),
                }
            }
            "SAVEDATESUPPORTED" => SearchKey::SaveDateSupported,
            "LARGER" | "SMALLER" | "OLDER" | "YOUNGER" => {
                self.sp()?;
                let n = self.number()?;
                match k.as_str() {
                    "LARGER" => SearchKey::Larger(n),
                    "SMALLER" => SearchKey::Smaller(n),
                    "OLDER" => SearchKey::Older(n),
                    _ => SearchKey::Younger(n),
                }
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "EMAILID" | "THREADID" => {
                self.sp()?;
                // RFC 8474 4: objectid = 1*255(ALPHA / DIGIT / "_" / "-").
                let id = self.astring()?;
                if id.is_empty() || id.len() > 255 || !id.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return Err("Invalid objectid".into());
                }
                let id = String::from_utf8(id).expect("ASCII");
                if k == "EMAILID" {
                    SearchKey::EmailId(id)
                } else {
                    SearchKey::ThreadId(id)
                }
            }
            "MODSEQ" => {
                self.sp()?;
                // RFC 7162 3.1.5: optional entry name and type before the number.
                if matches!(self.peek_kind(), Some(Kind::Quoted | Kind::QuotedEscaped)) {
                    self.string()?;
                    self.sp()?;
                    self.atom()?;
                    self.sp()?;
                }
                SearchKey::ModSeq(self.number()?)
            }
            "NOT" => {
                self.sp()?;
                self.depth += 1;
                if self.depth > self.nesting_max {
                    return Err("Too deeply nested".into());
                }
                let inner = self.search_key()?;
                self.depth -= 1;
                SearchKey::Not(Box::new(inner))
            }
            "OR" => {
                self.sp()?;
                self.depth += 1;
                if self.depth > self.nesting_max {
                    return Err("Too deeply nested".into());
                }
                let a = self.search_key()?;
                self.sp()?;
                let b = self.search_key()?;
                self.depth -= 1;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            _ => return Err(format!("Unknown search key {k}")),
        })
    }
}

pub fn parse_number(a: &[u8]) -> Option<u64> {
    if a.is_empty() || a.len() > 19 || !a.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(a.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `seq-number`: a non-zero 32-bit number (4294967295 included) or `*`.
fn seq_number(a: &[u8]) -> Option<SeqNum> {
    if a == b"*" {
        return Some(SeqNum::Star);
    }
    if a.first() == Some(&b'0') {
        return None;
    }
    parse_number(a).and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0).map(SeqNum::Num)
}

/// `sequence-set` (RFC 9051 9), including `$`.
pub fn parse_sequence_set(a: &[u8]) -> Option<SequenceSet> {
    if a == b"$" {
        return Some(SequenceSet::Saved);
    }
    let mut v = Vec::new();
    for part in a.split(|&b| b == b',') {
        let mut it = part.splitn(2, |&b| b == b':');
        let start = seq_number(it.next()?)?;
        let end = match it.next() {
            Some(e) => seq_number(e)?,
            None => start,
        };
        v.push(SeqRange { start, end });
    }
    Some(SequenceSet::from_ranges(&v))
}

fn parse_part_path(s: &str) -> Option<Vec<u32>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split('.').map(|n| n.parse::<u32>().ok().filter(|&n| n > 0)).collect()
}

/// `section-spec` inside the brackets. `fields` are given for HEADER.FIELDS.
/// The section of an IMAP URL (RFC 5092 `;SECTION=`), as `BODY[...]`
/// takes it without a header list: a part path, HEADER, TEXT, MIME.
pub fn parse_url_section(spec: &str) -> Option<Section> {
    parse_section_spec(spec, None).ok()
}

fn parse_section_spec(spec: &str, fields: Option<Vec<String>>) -> R<Section> {
    let mut part = Vec::new();
    let mut rest = spec;
    loop {
        let (head, tail) = match rest.find('.') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        let n: u32 = head.parse().map_err(|_| "Invalid section part")?;
        if n == 0 {
            return Err("Section parts start at 1".into());
        }
        part.push(n);
        match tail {
            Some(t) => rest = t,
            None => {
                rest = "";
                break;
            }
        }
    }
    if spec.ends_with('.') {
        return Err("Invalid section".into());
    }
    let text = match (rest, fields) {
        ("", None) => None,
        ("HEADER", None) => Some(SectionText::Header),
        ("TEXT", None) => Some(SectionText::Text),
        ("MIME", None) if !part.is_empty() => Some(SectionText::Mime),
        ("HEADER.FIELDS", Some(fields)) => Some(SectionText::HeaderFields { not: false, fields }),
        ("HEADER.FIELDS.NOT", Some(fields)) => Some(SectionText::HeaderFields { not: true, fields }),
        _ => return Err(format!("Invalid section {spec}")),
    };
    Ok(Section { part, text })
}

/// `<origin.count>` after a section; empty means no partial.
fn parse_partial(s: &str) -> R<Option<(u64, u64)>> {
    if s.is_empty() {
        return Ok(None);
    }
    let inner = s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).ok_or("Invalid partial")?;
    let (a, b) = inner.split_once('.').ok_or("Partial needs <origin.count>")?;
    let a = parse_number(a.as_bytes()).ok_or("Invalid partial origin")?;
    let b = parse_number(b.as_bytes()).filter(|&b| b > 0).ok_or("Invalid partial count")?;
    Ok(Some((a, b)))
}

const MONTHS: [&[u8; 3]; 12] = [b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"];

/// A month's number from its three-letter name, any case.
pub fn month(m: &[u8]) -> Option<u8> {
    let up = m.to_ascii_uppercase();
    MONTHS.iter().position(|x| x[..] == up[..]).map(|i| i as u8 + 1)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// `date-text`: `d-Mon-yyyy` or `dd-Mon-yyyy`.
pub fn parse_date(s: &[u8]) -> Option<Date> {
    let mut it = s.split(|&b| b == b'-');
    let d = it.next()?;
    let m = it.next()?;
    let y = it.next()?;
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let day = parse_number(d)? as u8;
    let month = month(m)?;
    let year = parse_number(y)? as u16;
    (day >= 1 && day <= days_in_month(year, month)).then_some(Date { year, month, day })
}

/// `date-time`: `dd-Mon-yyyy hh:mm:ss +zzzz` (day may be space-padded).
pub fn parse_date_time(s: &[u8]) -> Option<DateTime> {
    if s.len() != 26 || s[11] != b' ' || s[20] != b' ' {
        return None;
    }
    let day_txt = if s[0] == b' ' { &s[1..2] } else { &s[0..2] };
    let mut date_txt = day_txt.to_vec();
    date_txt.extend_from_slice(&s[2..11]);
    let date = parse_date(&date_txt)?;
    let t = &s[12..20];
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let hh = parse_number(&t[0..2])? as i64;
    let mm = parse_number(&t[3..5])? as i64;
    let ss = parse_number(&t[6..8])? as i64;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let z = &s[21..26];
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh = parse_number(&z[1..3])? as i64;
    let zm = parse_number(&z[3..5])? as i64;
    if zm > 59 {
        return None;
    }
    let offset = sign * (zh * 60 + zm);
    let local = date.days() * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(DateTime { unix: local - offset * 60, offset_minutes: offset as i16 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::scan::tokenize_reference;

    fn parse(line: &str) -> Result<Command, ParseError> {
        let mut toks = Vec::new();
        let ann = tokenize_reference(line.as_bytes(), 0, &mut toks).expect("scan");
        assert!(ann.is_none());
        parse_command(line.as_bytes(), &toks, 32)
    }

    fn body(line: &str) -> CommandBody {
        parse(line).unwrap_or_else(|e| panic!("{line}: {e:?}")).body
    }

    #[test]
    fn simple_commands() {
        assert_eq!(body("a CAPABILITY"), CommandBody::Capability);
        assert_eq!(body("a noop"), CommandBody::Noop);
        assert_eq!(body("a LOGIN joe \"se\\\"cret\""), CommandBody::Login { user: b"joe".to_vec(), password: b"se\"cret".to_vec() });
        assert_eq!(
            body("a SELECT INBOX (CONDSTORE)"),
            CommandBody::Select { mailbox: Mailbox(b"INBOX".to_vec()), read_only: false, params: SelectParams { condstore: true, qresync: None } }
        );
        let qresync = |line: &str| match body(line) {
            CommandBody::Select { params, .. } => params.qresync.unwrap(),
            b => panic!("{b:?}"),
        };
        // RFC 7162 3.2.5: known UIDs and seq-match data are each optional.
        let q = qresync("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))");
        assert_eq!((q.uidvalidity, q.modseq, q.known_uids.unwrap().resolve(0)), (67890007, 20050715194045000, vec![(41, 41), (43, 211), (214, 541)]));
        assert!(qresync("a EXAMINE INBOX (QRESYNC (1 2))").known_uids.is_none());
        let q = qresync("a SELECT INBOX (CONDSTORE QRESYNC (1 2 (1:3 4,7,9)))");
        assert_eq!(q.seq_match.map(|(s, u)| (s.resolve(0), u.resolve(0))), Some((vec![(1, 3)], vec![(4, 4), (7, 7), (9, 9)])));
        for bad in ["a SELECT INBOX (QRESYNC (0 2))", "a SELECT INBOX (QRESYNC (1 2 1:*))", "a SELECT INBOX (QRESYNC (1))", "a UID FETCH 1 FLAGS (VANISHED)"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(body("a ENABLE IMAP4rev2 UTF8=ACCEPT"), CommandBody::Enable(v) if v == ["IMAP4REV2", "UTF8=ACCEPT"]));
        assert!(matches!(body("a ID NIL"), CommandBody::Id(None)));
        assert!(matches!(body("a ID (\"name\" \"x\" \"v\" NIL)"), CommandBody::Id(Some(v)) if v.len() == 2));
    }

    #[test]
    fn errors_keep_the_tag() {
        let e = parse("t7 FROB").unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("t7"));
        let e = parse("t7  NOOP").unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("t7"));
        assert!(parse("t7 NOOP extra").is_err());
        assert_eq!(parse("+x NOOP").unwrap_err().tag, None);
    }

    #[test]
    fn fetch_items() {
        let CommandBody::Fetch { set, items, uid, .. } = body("a UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> BINARY[1.2] RFC822)")
        else {
            panic!()
        };
        assert!(uid);
        // Normalized at parse: numbers first, merged, then the `*` ranges.
        assert_eq!(set.to_string(), "7,1:*");
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[1],
            FetchItem::BodySection {
                section: Section { part: vec![], text: Some(SectionText::HeaderFields { not: false, fields: vec!["FROM".into(), "TO".into()] }) },
                partial: Some((0, 100)),
                peek: true,
                legacy: Legacy::None
            }
        );
        assert_eq!(items[2], FetchItem::Binary { part: vec![1, 2], partial: None, peek: false });
        let CommandBody::Fetch { items, .. } = body("a FETCH 1 BODY[1.2.MIME]") else { panic!() };
        assert_eq!(
            items[0],
            FetchItem::BodySection { section: Section { part: vec![1, 2], text: Some(SectionText::Mime) }, partial: None, peek: false, legacy: Legacy::None }
        );
        let CommandBody::Fetch { items, .. } = body("a FETCH 1 FULL") else { panic!() };
        assert_eq!(items.len(), 5);
        for bad in ["a FETCH 0 FLAGS", "a FETCH 1 BODY[MIME]", "a FETCH 1 BODY[1.]", "a FETCH 1 (FLAGS", "a FETCH 1 BODY[]<1>", "a FETCH 1 FOO"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_and_search() {
        let CommandBody::Store { op, silent, flags, .. } = body("a STORE 2:4 +FLAGS.SILENT (\\Deleted $Junk)") else { panic!() };
        assert_eq!((op, silent), (StoreOp::Add, true));
        assert_eq!(flags, vec![Flag::Deleted, Flag::Keyword("$Junk".into())]);
        let CommandBody::Search { key, charset, ret, .. } = body("a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (SEEN FROM \"x\") NOT 1:5 SINCE 1-Feb-2020")
        else {
            panic!()
        };
        assert_eq!(ret, Some(vec![SearchReturn::Min, SearchReturn::Count]));
        assert_eq!(charset.as_deref(), Some("UTF-8"));
        let SearchKey::And(keys) = key else { panic!() };
        // OR takes `NOT 1:5` as its second operand.
        assert_eq!(keys.len(), 2);
        assert!(matches!(&keys[0], SearchKey::Or(_, b) if matches!(**b, SearchKey::Not(_))));
        assert_eq!(keys[1], SearchKey::Since(Date { year: 2020, month: 2, day: 1 }));
        assert!(parse("a SEARCH SINCE 30-Feb-2020").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("a SEARCH {}ALL{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).is_err());
        let deep = format!("a SEARCH {}ALL", "NOT ".repeat(40));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn list_forms() {
        let CommandBody::List(a) = body("a LIST \"\" *") else { panic!() };
        assert_eq!(a.patterns, vec![b"*".to_vec()]);
        assert!(!a.extended);
        let CommandBody::List(a) = body("a LIST (SUBSCRIBED) \"\" (INBOX Sent%) RETURN (CHILDREN STATUS (MESSAGES))") else { panic!() };
        assert!(a.select_subscribed && a.return_children);
        assert_eq!(a.patterns.len(), 2);
        assert_eq!(a.return_status, Some(vec![StatusItem::Messages]));
    }

    #[test]
    fn date_time_parsing() {
        let dt = parse_date_time(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(dt.unix, 837_596_665);
        let dt2 = parse_date_time(b" 7-Jul-1996 02:44:25 +0000").unwrap();
        assert_eq!(dt2.offset_minutes, 0);
        assert!(parse_date_time(b"17-Jul-1996 24:44:25 -0700").is_none());
    }

    #[test]
    fn append_prefix() {
        let line = b"a1 APPEND Drafts (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5}";
        let mut toks = Vec::new();
        let a = tokenize_reference(line, 0, &mut toks).unwrap().unwrap();
        let h = parse_append_prefix(line, &toks, a.gap).unwrap().unwrap();
        assert_eq!(h.tag, "a1");
        assert_eq!(h.flags, vec![Flag::Seen]);
        assert!(h.date.is_some());
        let line = b"a1 FETCH 1 {5}";
        toks.clear();
        let a = tokenize_reference(line, 0, &mut toks).unwrap().unwrap();
        assert!(parse_append_prefix(line, &toks, a.gap).is_none());
    }
}
