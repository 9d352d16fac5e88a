//! The LMTP (RFC 2033) and inbound SMTP (RFC 5321) protocol engine, sans-io:
//! bytes in, replies out, and a [`Step::Deliver`] when a message is complete.
//! One engine serves both dialects; they differ in the greeting command
//! (LHLO or EHLO/HELO), in relaying rules, and in the replies after DATA
//! (one per recipient for LMTP, one in all for SMTP).
//!
//! It stores nothing itself and never says 250 for a message on its own: the
//! network layer stores each copy durably and reports back with
//! [`Session::delivered`]. Message data is not kept here either: it is
//! handed out as it is decoded ([`Session::pending_data`]), so a message
//! costs this engine no more memory than the input it was just given.
//!
//! DATA ends only at `<CRLF>.<CRLF>` (RFC 5321 4.1.1.4): a `.` line after a
//! bare LF does not end it, so a message cannot smuggle a second envelope
//! past a server that reads line ends differently. Bare LF and bare CR in
//! the data become CRLF (as Postfix's `smtpd_forbid_bare_newline =
//! normalize` does for LF): mail is stored with CRLF line ends only.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Lmtp,
    Smtp,
}

/// What the engine needs to know about the installation.
pub trait Directory {
    /// Whether a user of this (normalised) name exists.
    fn user_exists(&self, user: &str) -> bool;
    /// Whether mail for this domain is ours. LMTP trusts its MTA and accepts
    /// every domain when no local domains are configured.
    fn is_local_domain(&self, domain: &str, dialect: Dialect) -> bool;
}

/// Why an address is not a user of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOurs {
    /// Its domain is not ours: relaying is refused.
    Relay,
    /// No such user.
    Unknown,
}

/// The user mail to `addr` (RCPT TO's address, without brackets) goes to:
/// its local part, normalised, when its domain (if it has one) is ours and
/// the user exists.
pub fn recipient_user(dir: &dyn Directory, addr: &str, dialect: Dialect) -> Result<String, NotOurs> {
    let (local, domain) = match addr.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (addr, None),
    };
    if domain.is_some_and(|d| !dir.is_local_domain(d, dialect)) {
        return Err(NotOurs::Relay);
    }
    let user = crate::auth::passwd::normalize_user_name(local);
    if local.is_empty() || !dir.user_exists(&user) {
        return Err(NotOurs::Unknown);
    }
    Ok(user)
}

/// The RCPT parameter that marks a copy passed on by another backend of a
/// cluster: the receiving backend must store it or fail, never pass it on
/// again (two maps that disagree during a reload would otherwise bounce it
/// back and forth). See `forward`.
pub const HOP_PARAMETER: &str = "X-RINGMAIL-HOP";

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as given in RCPT TO (without brackets).
    pub address: String,
    pub user: String,
    /// Target mailbox (`X-MAILBOX=` parameter); INBOX when absent.
    pub mailbox: Option<String>,
    /// Passed on by another backend of the cluster (`X-RINGMAIL-HOP`): to
    /// be stored here or refused, never passed on again.
    pub hop: bool,
}

/// A complete message to store for each recipient: its data was handed
/// out chunk by chunk before this ([`Session::pending_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<Recipient>,
    /// Bytes of message data (dot-unstuffed, CRLF line ends).
    pub size: u64,
}

impl Envelope {
    /// Headers prepended to the copy for `r`: Return-Path and Delivered-To
    /// (and, for SMTP, the Received trace line RFC 5321 4.4 requires).
    pub fn prefix(&self, r: &Recipient, trace: Option<&str>) -> Vec<u8> {
        let mut p = format!("Return-Path: <{}>\r\nDelivered-To: {}\r\n", self.from, r.address).into_bytes();
        if let Some(t) = trace {
            p.extend_from_slice(t.as_bytes());
        }
        p
    }
}

/// Why a copy could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Temporary: the client should retry (4xx).
    Temporary(String),
    /// The disk is full (452 4.3.1, RFC 3463: mail system full).
    Full,
    /// The recipient's quota has no room (RFC 3463 X.2.2, mailbox full):
    /// 552, or 452 when configured as temporary.
    OverQuota,
    /// Permanent (5xx): the user vanished between RCPT and DATA.
    NoSuchUser,
}

#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send the output, read more, call `step` again.
    Read,
    /// Store one copy of the envelope per recipient, then call `delivered`.
    Deliver(Envelope),
    /// Send the output, then the TLS handshake (RFC 3207); call
    /// `tls_started` when it succeeded.
    StartTls,
    /// Send the output and close.
    Close,
}

/// Limits of the engine.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: u64,
    /// RFC 5321 4.5.3.1.8 asks for at least 100.
    pub max_recipients: usize,
    /// Longest command line (RFC 5321: 512 octets; we allow more).
    pub line_max: usize,
    /// Bad commands before the connection is closed.
    pub max_errors: u32,
    /// A full mailbox is a temporary failure (452 4.2.2) rather than a
    /// permanent one (552 5.2.2).
    pub over_quota_temporary: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 64 << 20, max_recipients: 100, line_max: 4096, max_errors: 10, over_quota_temporary: false }
    }
}

enum Mode {
    Command,
    /// Reading message data.
    Data(DataState),
    /// Waiting for `delivered`.
    Delivering,
    Closed,
}

/// Where the DATA decoder is between inputs.
#[derive(Debug, Clone, Copy)]
struct DataState {
    /// At the start of a line (after any line end): a leading `.` is stuffing.
    at_line_start: bool,
    /// The previous line ended with CRLF (or DATA just began): only then
    /// may a `.` line end the data.
    after_crlf: bool,
    /// A CR ended the last input: it is a line end or a bare CR depending
    /// on the next byte.
    pending_cr: bool,
    /// Over the size limit: the rest is read and dropped, then refused.
    oversize: bool,
    /// Bytes of data so far.
    size: u64,
}

pub struct Session {
    dialect: Dialect,
    hostname: String,
    limits: Limits,
    helo: Option<String>,
    from: Option<String>,
    recipients: Vec<Recipient>,
    /// Decoded message data not yet taken by the network layer.
    data: Vec<u8>,
    mode: Mode,
    input: Vec<u8>,
    errors: u32,
    /// The client's address, for the Received line.
    peer: String,
    /// EHLO/LHLO rather than HELO.
    extended: bool,
    /// Whether STARTTLS may be offered, and whether TLS is on.
    tls_offered: bool,
    tls_active: bool,
}

/// The greeting of a connection turned away at the door (over the
/// connection limits; RFC 5321 3.1: a 421 greeting, then close).
pub fn refusal(why: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply(&mut out, 421, &format!("4.7.0 {why}"));
    out
}

fn reply(out: &mut Vec<u8>, code: u16, text: &str) {
    out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
}

/// `<local@domain>` from a MAIL FROM / RCPT TO argument, with the rest
/// (ESMTP parameters). Accepts a missing `<>` pair, as Postfix never sends but
/// hand-typed sessions do.
fn path_arg(arg: &str) -> Option<(String, &str)> {
    let arg = arg.trim_start();
    if let Some(rest) = arg.strip_prefix('<') {
        let end = rest.find('>')?;
        let addr = rest[..end].to_string();
        // Drop a source route (RFC 5321 4.1.1.3: ignore it).
        let addr = match addr.rfind(':') {
            Some(i) if addr.starts_with('@') => addr[i + 1..].to_string(),
            _ => addr,
        };
        return Some((addr, rest[end + 1..].trim()));
    }
    let end = arg.find(' ').unwrap_or(arg.len());
    Some((arg[..end].to_string(), arg[end..].trim()))
}

impl Session {
    pub fn new(dialect: Dialect, hostname: &str, limits: Limits) -> Session {
        Session {
            dialect,
            hostname: hostname.to_string(),
            limits,
            helo: None,
            from: None,
            recipients: Vec::new(),
            data: Vec::new(),
            mode: Mode::Command,
            input: Vec::new(),
            errors: 0,
            peer: String::new(),
            extended: false,
            tls_offered: false,
            tls_active: false,
        }
    }

    /// Offer STARTTLS in the EHLO/LHLO reply.
    pub fn offer_tls(&mut self) {
        self.tls_offered = true;
    }

    /// The handshake after STARTTLS succeeded. RFC 3207 4.2: everything
    /// learnt from the client before it is forgotten; it must greet again.
    pub fn tls_started(&mut self) {
        self.reset();
        self.helo = None;
        self.extended = false;
        self.tls_active = true;
        self.mode = Mode::Command;
    }

    /// The banner (RFC 5321 4.2 / RFC 2033 4.1).
    pub fn greeting(&self, out: &mut Vec<u8>) {
        let proto = match self.dialect {
            Dialect::Lmtp => "LMTP",
            Dialect::Smtp => "ESMTP",
        };
        reply(out, 220, &format!("{} {proto} ringmail ready", self.hostname));
    }

    /// The server is stopping (RFC 5321 3.8: 421, then close).
    pub fn shutting_down(&mut self, out: &mut Vec<u8>) {
        reply(out, 421, "4.3.2 Service shutting down");
        self.mode = Mode::Closed;
    }

    /// The client was silent for too long (RFC 5321 4.5.3.2).
    pub fn timed_out(&mut self, out: &mut Vec<u8>) {
        reply(out, 421, "4.4.2 Timeout, closing connection");
        self.mode = Mode::Closed;
    }

    /// Where the client connects from, for the Received line.
    pub fn set_peer(&mut self, peer: &str) {
        self.peer = peer.to_string();
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Whether the engine holds no partial input (the connection is idle).
    pub fn is_idle(&self) -> bool {
        self.input.is_empty() && matches!(self.mode, Mode::Command)
    }

    /// Message data decoded since the last [`Session::clear_data`]: take it
    /// after every `step` while a message is coming in.
    pub fn pending_data(&self) -> &[u8] {
        &self.data
    }

    pub fn clear_data(&mut self) {
        self.data.clear();
    }

    /// The Received trace line (RFC 5321 4.4) for SMTP; none for LMTP, whose
    /// MTA in front has added its own. `now` is an RFC 5322 date-time.
    pub fn trace(&self, r: &Recipient, now: &str) -> Option<String> {
        (self.dialect == Dialect::Smtp).then(|| {
            // RFC 3848: ESMTPS when the session was encrypted.
            let with = match (self.extended, self.tls_active) {
                (true, true) => "ESMTPS",
                (true, false) => "ESMTP",
                (false, _) => "SMTP",
            };
            let helo = self.helo.as_deref().unwrap_or("unknown");
            format!("Received: from {helo} ({})\r\n\tby {} (ringmail) with {with}\r\n\tfor <{}>; {now}\r\n", self.peer, self.hostname, r.address)
        })
    }

    fn reset(&mut self) {
        self.from = None;
        self.recipients.clear();
        self.data = Vec::new();
    }

    /// Whether a message is being received (its data handed out so far
    /// belongs to a message not yet complete).
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_))
    }

    fn error(&mut self, out: &mut Vec<u8>, code: u16, text: &str) -> Option<Step> {
        reply(out, code, text);
        self.errors += 1;
        if self.errors >= self.limits.max_errors {
            reply(out, 421, "4.7.0 Too many errors, closing connection");
            self.mode = Mode::Closed;
            return Some(Step::Close);
        }
        None
    }

    /// Processes input until the network layer must act.
    pub fn step(&mut self, dir: &dyn Directory, out: &mut Vec<u8>) -> Step {
        loop {
            match self.mode {
                Mode::Closed => return Step::Close,
                Mode::Delivering => return Step::Read,
                Mode::Data(d) => {
                    if let Some(s) = self.data_step(d, out) {
                        return s;
                    }
                    if matches!(self.mode, Mode::Data(_)) {
                        return Step::Read;
                    }
                }
                Mode::Command => {
                    let Some(lf) = memchr::memchr(b'\n', &self.input) else {
                        if self.input.len() > self.limits.line_max {
                            self.input.clear();
                            reply(out, 500, "5.5.2 Line too long");
                            self.mode = Mode::Closed;
                            return Step::Close;
                        }
                        return Step::Read;
                    };
                    let line: Vec<u8> = self.input.drain(..=lf).collect();
                    if line.len() > self.limits.line_max {
                        if let Some(s) = self.error(out, 500, "5.5.2 Line too long") {
                            return s;
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    if let Some(s) = self.command(text, dir, out) {
                        return s;
                    }
                }
            }
        }
    }

    fn command(&mut self, line: &str, dir: &dyn Directory, out: &mut Vec<u8>) -> Option<Step> {
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        let lmtp = self.dialect == Dialect::Lmtp;
        match verb.as_str() {
            "LHLO" | "EHLO" | "HELO" => {
                if lmtp != (verb == "LHLO") {
                    let want = if lmtp { "5.5.1 This is LMTP: use LHLO" } else { "5.5.1 Use EHLO or HELO" };
                    return self.error(out, 500, want);
                }
                if arg.trim().is_empty() {
                    return self.error(out, 501, "5.5.4 A domain or address literal is required");
                }
                self.reset();
                self.helo = Some(arg.trim().to_string());
                self.extended = verb != "HELO";
                if verb == "HELO" {
                    reply(out, 250, &self.hostname);
                } else {
                    let starttls = if self.tls_offered && !self.tls_active { "250-STARTTLS\r\n" } else { "" };
                    out.extend_from_slice(
                        format!(
                            "250-{}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n{starttls}250 SIZE {}\r\n",
                            self.hostname, self.limits.max_message
                        )
                        .as_bytes(),
                    );
                }
                None
            }
            "MAIL" => {
                if self.helo.is_none() {
                    return self.error(out, 503, if lmtp { "5.5.1 Send LHLO first" } else { "5.5.1 Send EHLO or HELO first" });
                }
                if self.from.is_some() {
                    return self.error(out, 503, "5.5.1 Sender already given");
                }
                let Some(rest) = strip_keyword(arg, "FROM:") else { return self.error(out, 501, "5.5.4 Syntax: MAIL FROM:<address>") };
                let Some((addr, params)) = path_arg(rest) else { return self.error(out, 501, "5.5.4 Syntax: MAIL FROM:<address>") };
                for p in params.split_whitespace() {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    match k.to_ascii_uppercase().as_str() {
                        "SIZE" => match v.parse::<u64>() {
                            Ok(n) if n > self.limits.max_message => return self.error(out, 552, "5.3.4 Message size exceeds fixed limit"),
                            Ok(_) => {}
                            Err(_) => return self.error(out, 501, "5.5.4 Bad SIZE parameter"),
                        },
                        "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                        _ => return self.error(out, 555, "5.5.4 Unsupported MAIL parameter"),
                    }
                }
                self.from = Some(addr);
                reply(out, 250, "2.1.0 Ok");
                None
            }
            "RCPT" => {
                if self.from.is_none() {
                    return self.error(out, 503, "5.5.1 Need MAIL command first");
                }
                let Some(rest) = strip_keyword(arg, "TO:") else { return self.error(out, 501, "5.5.4 Syntax: RCPT TO:<address>") };
                let Some((addr, params)) = path_arg(rest) else { return self.error(out, 501, "5.5.4 Syntax: RCPT TO:<address>") };
                if self.recipients.len() >= self.limits.max_recipients {
                    reply(out, 452, "4.5.3 Too many recipients");
                    return None;
                }
                let mut mailbox = None;
                let mut hop = false;
                for p in params.split_whitespace() {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    if k.eq_ignore_ascii_case("X-MAILBOX") && lmtp {
                        mailbox = Some(xtext_decode(v));
                    } else if k.eq_ignore_ascii_case(HOP_PARAMETER) && lmtp {
                        hop = true;
                    } else {
                        return self.error(out, 555, "5.5.4 Unsupported RCPT parameter");
                    }
                }
                let user = match recipient_user(dir, &addr, self.dialect) {
                    Ok(u) => u,
                    Err(NotOurs::Relay) => {
                        reply(out, 550, "5.7.1 Relay access denied");
                        return None;
                    }
                    Err(NotOurs::Unknown) => {
                        reply(out, 550, "5.1.1 User unknown");
                        return None;
                    }
                };
                self.recipients.push(Recipient { address: addr.clone(), user, mailbox, hop });
                reply(out, 250, "2.1.5 Ok");
                None
            }
            "DATA" => {
                if self.from.is_none() {
                    return self.error(out, 503, "5.5.1 Need MAIL command first");
                }
                if self.recipients.is_empty() {
                    return self.error(out, 503, "5.5.1 No valid recipients");
                }
                reply(out, 354, "End data with <CR><LF>.<CR><LF>");
                self.data.clear();
                self.mode = Mode::Data(DataState { at_line_start: true, after_crlf: true, pending_cr: false, oversize: false, size: 0 });
                None
            }
            "STARTTLS" => {
                if !self.tls_offered {
                    return self.error(out, 502, "5.5.1 STARTTLS is not offered here");
                }
                if self.tls_active {
                    return self.error(out, 503, "5.5.1 TLS is already active");
                }
                if !arg.trim().is_empty() {
                    return self.error(out, 501, "5.5.4 STARTTLS takes no parameters");
                }
                if self.helo.is_none() {
                    return self.error(out, 503, if lmtp { "5.5.1 Send LHLO first" } else { "5.5.1 Send EHLO first" });
                }
                reply(out, 220, "2.0.0 Ready to start TLS");
                // RFC 3207 5: commands pipelined behind STARTTLS arrived in
                // cleartext and must not be obeyed after the handshake.
                self.input.clear();
                self.mode = Mode::Closed;
                Some(Step::StartTls)
            }
            "RSET" => {
                self.reset();
                reply(out, 250, "2.0.0 Ok");
                None
            }
            "NOOP" => {
                reply(out, 250, "2.0.0 Ok");
                None
            }
            "VRFY" => {
                reply(out, 252, "2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
                None
            }
            "QUIT" => {
                reply(out, 221, "2.0.0 Bye");
                self.mode = Mode::Closed;
                Some(Step::Close)
            }
            "" => self.error(out, 500, "5.5.2 Empty command"),
            _ => self.error(out, 502, "5.5.2 Command not recognized"),
        }
    }

    /// Decodes message data from the input: dot-unstuffing (RFC 5321
    /// 4.5.2), line ends made CRLF, the end marker (only after a CRLF), and
    /// the size limit (excess is read and dropped, then refused).
    fn data_step(&mut self, mut d: DataState, out: &mut Vec<u8>) -> Option<Step> {
        let mut consumed = 0;
        let mut done = false;
        let input = std::mem::take(&mut self.input);
        while consumed < input.len() {
            let rest = &input[consumed..];
            if d.pending_cr {
                // The CR that ended the last input.
                d.pending_cr = false;
                if rest[0] == b'\n' {
                    consumed += 1;
                    self.emit(&mut d, b"\r\n");
                    d.after_crlf = true;
                } else {
                    self.emit(&mut d, b"\r\n");
                    d.after_crlf = false;
                }
                d.at_line_start = true;
                continue;
            }
            let lf = memchr::memchr(b'\n', rest);
            if d.at_line_start {
                let line = &rest[..lf.map_or(rest.len(), |i| i + 1)];
                if lf.is_none() && line.len() < 3 && b".\r\n".starts_with(line) {
                    // Could still be the end marker: wait for the rest of it.
                    break;
                }
                if d.after_crlf && line == b".\r\n" {
                    consumed += 3;
                    done = true;
                    break;
                }
                if line.first() == Some(&b'.') {
                    consumed += 1;
                    d.at_line_start = false;
                    continue;
                }
            }
            // Up to and including the next line end (or all there is).
            let (content, end) = match lf {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            let (content, crlf) = match content.strip_suffix(b"\r") {
                Some(c) if lf.is_some() => (c, true),
                _ => (content, false),
            };
            // Bare CRs inside the line become line ends too.
            let mut piece = content;
            let mut held_cr = false;
            if lf.is_none() && piece.last() == Some(&b'\r') {
                // Maybe the first half of a CRLF split across reads.
                piece = &piece[..piece.len() - 1];
                held_cr = true;
            }
            while let Some(i) = memchr::memchr(b'\r', piece) {
                self.emit(&mut d, &piece[..i]);
                self.emit(&mut d, b"\r\n");
                piece = &piece[i + 1..];
            }
            self.emit(&mut d, piece);
            consumed += end;
            if lf.is_some() {
                self.emit(&mut d, b"\r\n");
                d.at_line_start = true;
                d.after_crlf = crlf;
            } else {
                d.at_line_start = false;
                d.pending_cr = held_cr;
            }
        }
        self.input = input;
        self.input.drain(..consumed);
        if !done {
            self.mode = Mode::Data(d);
            return None;
        }
        if d.oversize {
            self.mode = Mode::Command;
            let n = if self.dialect == Dialect::Lmtp { self.recipients.len() } else { 1 };
            for _ in 0..n {
                reply(out, 552, "5.3.4 Message size exceeds fixed limit");
            }
            self.reset();
            return None;
        }
        self.mode = Mode::Delivering;
        let env = Envelope { from: self.from.clone().unwrap_or_default(), recipients: self.recipients.clone(), size: d.size };
        Some(Step::Deliver(env))
    }

    /// Appends decoded data, within the size limit.
    fn emit(&mut self, d: &mut DataState, bytes: &[u8]) {
        if d.oversize || bytes.is_empty() {
            return;
        }
        if d.size + bytes.len() as u64 > self.limits.max_message {
            d.oversize = true;
            self.data.clear();
            return;
        }
        d.size += bytes.len() as u64;
        self.data.extend_from_slice(bytes);
    }

    /// Reports what happened to each copy, in recipient order, and answers:
    /// LMTP one reply per recipient (RFC 2033 4.2), SMTP one in all.
    pub fn delivered(&mut self, results: &[Result<(), DeliveryError>], out: &mut Vec<u8>) {
        let over_quota_temporary = self.limits.over_quota_temporary;
        let line = |r: &Result<(), DeliveryError>| match r {
            Ok(()) => (250, "2.0.0 Ok: delivered".to_string()),
            Err(DeliveryError::NoSuchUser) => (550, "5.1.1 User unknown".to_string()),
            Err(DeliveryError::Temporary(why)) => (451, format!("4.3.0 Temporary failure: {why}")),
            Err(DeliveryError::Full) => (452, "4.3.1 Insufficient system storage".to_string()),
            Err(DeliveryError::OverQuota) if over_quota_temporary => (452, "4.2.2 Mailbox is full (quota exceeded)".to_string()),
            Err(DeliveryError::OverQuota) => (552, "5.2.2 Mailbox is full (quota exceeded)".to_string()),
        };
        match self.dialect {
            Dialect::Lmtp => {
                for (r, rcpt) in results.iter().zip(&self.recipients) {
                    let (code, text) = line(r);
                    reply(out, code, &format!("{text} <{}>", rcpt.address));
                }
            }
            Dialect::Smtp => {
                // One answer for all: success only if every copy is stored.
                match results.iter().find(|r| r.is_err()) {
                    None => reply(out, 250, "2.0.0 Ok: queued"),
                    Some(r) => {
                        let (code, text) = line(r);
                        reply(out, code, &text);
                    }
                }
            }
        }
        self.reset();
        self.mode = Mode::Command;
    }
}

/// `arg` without a leading keyword (`FROM:`), any case. Byte-wise: the
/// line was decoded lossily and may hold multi-byte replacement characters
/// (slicing a `str` at a byte index inside one panicked, found by fuzzing).
fn strip_keyword<'a>(arg: &'a str, kw: &str) -> Option<&'a str> {
    let a = arg.trim_start();
    a.get(..kw.len()).filter(|p| p.eq_ignore_ascii_case(kw)).and_then(|_| a.get(kw.len()..))
}

/// xtext (RFC 3461 4): `+XX` hex escapes.
fn xtext_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' && i + 2 < b.len() {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
