//! One POP3 session (RFC 1939), sans-io: lines in, responses out (into the
//! same `Out` IMAP uses, so a message goes from the mapping to the socket
//! without a copy), and [`Step`]s for what needs the network layer: a
//! password check, opening the maildrop on the user's worker, TLS, the
//! commit of QUIT's deletions.
//!
//! The maildrop is the INBOX as it was at login (section 8 asks for a
//! fixed numbering): messages that arrive later are not seen, and one
//! expunged by IMAP meanwhile answers `-ERR`. DELE only marks; the marked
//! messages are expunged at QUIT (the UPDATE state), and nowhere else.

use std::rc::Rc;

use super::command::{parse, Command, ParseError};
use crate::auth::sasl::{self, Mechanism};
use crate::auth::AuthResult;
use crate::proto::Out;
use crate::store::format::{FlagChange, F_SEEN};
use crate::store::{MailboxRef, Ticket, UserStore};

/// Longest command line taken (RFC 2449 4 allows 255 octets; an AUTH
/// response with a long name may need more).
pub const MAX_LINE: usize = 4096;
/// Output produced in one step before the network layer writes it: a large
/// RETR or LIST is sent in slices, never held whole.
pub const BUDGET: usize = 256 << 10;
/// Bad commands before the session is closed.
const MAX_ERRORS: u32 = 20;

/// What the connection is, as the network layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub tls: bool,
    /// Passwords may be sent without TLS from here (a trusted network).
    pub cleartext_ok: bool,
    /// STLS can be offered (TLS configured, connection in cleartext).
    pub can_stls: bool,
}

/// The INBOX as a POP3 session sees it: fixed at login.
pub struct Maildrop {
    user: Rc<UserStore>,
    mailbox: MailboxRef,
    uidvalidity: u32,
    /// (UID, size) of each message; message n is at n - 1.
    msgs: Vec<(u32, u64)>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// The user's INBOX as it is now.
    pub fn open(user: Rc<UserStore>) -> Result<Maildrop, String> {
        let mailbox = user.mailbox("INBOX").map_err(|e| format!("{e:?}"))?;
        let (uidvalidity, msgs) = {
            let m = mailbox.borrow();
            (m.uidvalidity(), m.msgs().iter().map(|x| (x.uid, m.location(x).length)).collect::<Vec<_>>())
        };
        let deleted = vec![false; msgs.len()];
        Ok(Maildrop { user, mailbox, uidvalidity, msgs, deleted })
    }

    /// How many messages are not marked deleted, and their size.
    fn totals(&self) -> (u64, u64) {
        self.msgs.iter().zip(&self.deleted).filter(|(_, d)| !**d).fold((0, 0), |(n, size), (m, _)| (n + 1, size + m.1))
    }

    /// Dovecot's default UIDL (`%08Xu%08Xv`): the same message keeps it
    /// across sessions and servers that keep UIDs.
    fn uidl(&self, i: usize) -> String {
        format!("{:08X}{:08X}", self.msgs[i].0, self.uidvalidity)
    }
}

/// Why a maildrop could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Another POP3 session of the user has it (RFC 3206 IN-USE).
    InUse,
    /// The store could not be opened, or the user is moving (SYS/TEMP).
    Unavailable,
}

/// What the network layer does next.
pub enum Step {
    /// Write what is in `out`, then wait for input.
    Read,
    /// Write what is in `out` and step again (a slice of a long answer).
    Flush,
    /// Write `out`, then the TLS handshake (STLS).
    StartTls,
    /// Check this password, then call [`Session::auth_done`].
    Authenticate { user: String, password: Vec<u8> },
    /// Logged in: take the user's POP3 lock and open their maildrop (on the
    /// user's worker), then call [`Session::opened`].
    Open(String),
    /// QUIT deleted messages: await this commit, then
    /// [`Session::quit_done`].
    AwaitDurable(Ticket),
    /// Write `out` and close.
    Close,
}

enum State {
    Authorization {
        /// Named by USER, waiting for PASS.
        user: Option<String>,
        sasl: Option<Mechanism>,
    },
    /// Authenticated; the maildrop is being opened.
    Opening(String),
    Transaction(Box<Maildrop>),
    Logout,
}

/// A long answer under way.
enum Pending {
    /// LIST or UIDL of every message, from this index.
    Lines { uidl: bool, next: usize },
    /// Message bytes from `at` to `end`, dot-stuffed as they go.
    Message { data: crate::proto::encode::Shared, at: usize, end: usize },
}

pub struct Session {
    facts: Facts,
    state: State,
    input: Vec<u8>,
    pending: Option<Pending>,
    errors: u32,
    /// Discarding the rest of a line that was too long.
    skipping: bool,
}

/// What a session that moves to its user's worker carries (no store
/// handles: it is between login and opening the maildrop).
pub struct Snapshot {
    pub facts: Facts,
    pub user: String,
    pub input: Vec<u8>,
    errors: u32,
}

const PLAINTEXT_REFUSED: &str = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";

impl Session {
    pub fn new(facts: Facts) -> Session {
        Session { facts, state: State::Authorization { user: None, sasl: None }, input: Vec::new(), pending: None, errors: 0, skipping: false }
    }

    /// A session moved here after its login: it opens the maildrop next.
    pub fn resume(s: Snapshot) -> Session {
        Session { facts: s.facts, state: State::Opening(s.user), input: s.input, pending: None, errors: s.errors, skipping: false }
    }

    /// What moves to the user's worker, if the session is between login and
    /// opening the maildrop.
    pub fn snapshot(self) -> Option<Snapshot> {
        match self.state {
            State::Opening(user) => Some(Snapshot { facts: self.facts, user, input: self.input, errors: self.errors }),
            _ => None,
        }
    }

    pub fn greeting(&self, out: &mut Out) {
        out.raw(b"+OK ringmail ready.\r\n");
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    pub fn is_authenticated(&self) -> bool {
        !matches!(self.state, State::Authorization { .. })
    }

    /// The user, once logged in.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Opening(u) => Some(u),
            State::Transaction(m) => Some(m.user.name()),
            _ => None,
        }
    }

    pub fn tls_started(&mut self) {
        self.facts.tls = true;
        self.facts.can_stls = false;
    }

    /// Bytes the client sent past a STLS command must not be read as
    /// encrypted (RFC 2595 4): they are dropped.
    pub fn forget_input(&mut self) {
        self.input.clear();
    }

    fn may_send_passwords(&self) -> bool {
        self.facts.tls || self.facts.cleartext_ok
    }

    /// Runs the buffered commands until one needs the network layer.
    pub fn step(&mut self, out: &mut Out) -> Step {
        loop {
            if self.pending.is_some() {
                self.continue_pending(out);
                if self.pending.is_some() {
                    return Step::Flush;
                }
            }
            if matches!(self.state, State::Logout) {
                return Step::Close;
            }
            if let State::Opening(u) = &self.state {
                return Step::Open(u.clone());
            }
            if out.len() >= BUDGET {
                return Step::Flush;
            }
            let Some(nl) = memchr::memchr(b'\n', &self.input) else {
                if self.input.len() > MAX_LINE {
                    self.input.clear();
                    self.skipping = true;
                }
                return Step::Read;
            };
            let mut line: Vec<u8> = self.input.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if std::mem::take(&mut self.skipping) || line.len() > MAX_LINE {
                if let Some(s) = self.error(out, "-ERR Line too long.\r\n") {
                    return s;
                }
                continue;
            }
            if let Some(s) = self.line(&line, out) {
                return s;
            }
        }
    }

    /// A bad command; Close after too many.
    fn error(&mut self, out: &mut Out, text: &str) -> Option<Step> {
        out.str(text);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            out.raw(b"-ERR Too many bad commands.\r\n");
            self.state = State::Logout;
            return Some(Step::Close);
        }
        None
    }

    fn line(&mut self, line: &[u8], out: &mut Out) -> Option<Step> {
        if let State::Authorization { sasl: Some(_), .. } = &self.state {
            return self.sasl_response(line, out);
        }
        let cmd = match parse(line) {
            Ok(c) => c,
            Err(ParseError::Unknown(w)) => return self.error(out, &format!("-ERR Unknown command: {w}\r\n")),
            Err(ParseError::Syntax(why)) => return self.error(out, &format!("-ERR {why}.\r\n")),
        };
        let may_send_passwords = self.may_send_passwords();
        match (&mut self.state, cmd) {
            (_, Command::Capa) => {
                self.capa(out);
                None
            }
            (_, Command::Noop) => {
                out.raw(b"+OK\r\n");
                None
            }
            (State::Authorization { .. }, Command::Quit) => {
                out.raw(b"+OK Logging out.\r\n");
                self.state = State::Logout;
                Some(Step::Close)
            }
            (State::Authorization { .. }, Command::Stls) => {
                if self.facts.tls {
                    return self.error(out, "-ERR TLS is already active.\r\n");
                }
                if !self.facts.can_stls {
                    return self.error(out, "-ERR STLS is not available.\r\n");
                }
                out.raw(b"+OK Begin TLS negotiation now.\r\n");
                Some(Step::StartTls)
            }
            (State::Authorization { .. }, Command::Apop) => self.error(out, "-ERR APOP is not supported.\r\n"),
            (State::Authorization { .. }, Command::User(_) | Command::Pass(_) | Command::Auth(Some(_))) if !may_send_passwords => {
                self.error(out, PLAINTEXT_REFUSED)
            }
            (State::Authorization { user, .. }, Command::User(name)) => {
                *user = Some(name);
                out.raw(b"+OK\r\n");
                None
            }
            (State::Authorization { user, .. }, Command::Pass(password)) => match user.take() {
                Some(user) => Some(Step::Authenticate { user, password }),
                None => self.error(out, "-ERR No username given.\r\n"),
            },
            (State::Authorization { .. }, Command::Auth(None)) => {
                out.raw(b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
                None
            }
            (State::Authorization { sasl, .. }, Command::Auth(Some((mech, initial)))) => {
                let (m, prompt): (Mechanism, &[u8]) = match mech.as_str() {
                    "PLAIN" => (Mechanism::Plain, b""),
                    "LOGIN" => (Mechanism::LoginUser, b"Username:"),
                    _ => return self.error(out, "-ERR [AUTH] Unsupported authentication mechanism.\r\n"),
                };
                *sasl = Some(m);
                match initial {
                    // RFC 5034 4: the initial response, as the first line would be.
                    Some(ir) => self.sasl_response(&ir, out),
                    None => {
                        out.raw(b"+ ").str(&sasl::encode(prompt)).raw(b"\r\n");
                        None
                    }
                }
            }
            (State::Transaction(m), cmd) => {
                let step = transaction(m, cmd, out, &mut self.pending);
                if matches!(step, Some(Step::Close)) {
                    self.state = State::Logout;
                }
                step
            }
            (_, _) => self.error(out, "-ERR Unknown command.\r\n"),
        }
    }

    /// A line of a SASL exchange (or an AUTH's initial response).
    fn sasl_response(&mut self, line: &[u8], out: &mut Out) -> Option<Step> {
        let State::Authorization { sasl, .. } = &mut self.state else { return None };
        let mech = sasl.take()?;
        if line == b"*" {
            return self.error(out, "-ERR Authentication aborted.\r\n");
        }
        let Some(r) = sasl::decode(line) else {
            return self.error(out, "-ERR [AUTH] Invalid base64 data.\r\n");
        };
        match mech {
            Mechanism::Plain => {
                let Some((authz, user, pass)) = sasl::plain(&r) else {
                    return self.error(out, "-ERR [AUTH] Invalid PLAIN response.\r\n");
                };
                if !authz.is_empty() && authz != user {
                    return self.error(out, "-ERR [AUTH] Authentication failed.\r\n");
                }
                Some(Step::Authenticate { user: String::from_utf8_lossy(user).into_owned(), password: pass.to_vec() })
            }
            Mechanism::LoginUser => {
                *sasl = Some(Mechanism::LoginPassword(r));
                out.raw(b"+ ").str(&sasl::encode(b"Password:")).raw(b"\r\n");
                None
            }
            Mechanism::LoginPassword(user) => Some(Step::Authenticate { user: String::from_utf8_lossy(&user).into_owned(), password: r }),
        }
    }

    fn capa(&self, out: &mut Out) {
        out.raw(b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        if matches!(self.state, State::Authorization { .. }) {
            if self.may_send_passwords() {
                out.raw(b"USER\r\nSASL PLAIN LOGIN\r\n");
            }
            if self.facts.can_stls && !self.facts.tls {
                out.raw(b"STLS\r\n");
            }
        }
        out.raw(b"IMPLEMENTATION ringmail\r\n.\r\n");
    }

    /// The password check's result.
    pub fn auth_done(&mut self, result: AuthResult, out: &mut Out) -> Step {
        match result {
            AuthResult::Ok(user) => {
                self.state = State::Opening(user.clone());
                Step::Open(user)
            }
            AuthResult::Failed => {
                self.state = State::Authorization { user: None, sasl: None };
                self.error(out, "-ERR [AUTH] Authentication failed.\r\n").unwrap_or_else(|| self.step(out))
            }
            AuthResult::Unavailable => {
                self.state = State::Authorization { user: None, sasl: None };
                out.raw(b"-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n");
                self.step(out)
            }
        }
    }

    /// The maildrop, opened and locked, or why not.
    pub fn opened(&mut self, result: Result<Maildrop, OpenError>, out: &mut Out) -> Step {
        match result {
            Ok(m) => {
                self.state = State::Transaction(Box::new(m));
                out.raw(b"+OK Logged in.\r\n");
            }
            Err(OpenError::InUse) => {
                self.state = State::Authorization { user: None, sasl: None };
                out.raw(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
            }
            Err(OpenError::Unavailable) => {
                self.state = State::Authorization { user: None, sasl: None };
                out.raw(b"-ERR [SYS/TEMP] The mailbox cannot be opened now; try again later.\r\n");
            }
        }
        self.step(out)
    }

    /// QUIT's deletions are durable (or failed).
    pub fn quit_done(&mut self, r: std::io::Result<()>, out: &mut Out) -> Step {
        match r {
            Ok(()) => out.raw(b"+OK Logging out, messages deleted.\r\n"),
            Err(_) => out.raw(b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n"),
        };
        self.state = State::Logout;
        Step::Close
    }

    /// Autologout (RFC 1939 3: at least 10 minutes idle).
    pub fn timed_out(&mut self, out: &mut Out) {
        out.raw(b"-ERR Disconnected for inactivity.\r\n");
        self.state = State::Logout;
    }

    pub fn shutdown(&mut self, out: &mut Out) {
        out.raw(b"-ERR Server shutting down.\r\n");
        self.state = State::Logout;
    }

    /// The user's mail is moving to another backend.
    pub fn moving(&mut self, out: &mut Out) {
        out.raw(b"-ERR [SYS/TEMP] Your mail is moving to another server; connect again in a moment.\r\n");
        self.state = State::Logout;
    }

    /// Writes more of a long answer, up to the budget.
    fn continue_pending(&mut self, out: &mut Out) {
        let Some(p) = self.pending.take() else { return };
        let State::Transaction(m) = &self.state else { return };
        match p {
            Pending::Lines { uidl, mut next } => {
                while next < m.msgs.len() && out.len() < BUDGET {
                    if !m.deleted[next] {
                        match uidl {
                            true => out.str(&format!("{} {}\r\n", next + 1, m.uidl(next))),
                            false => out.str(&format!("{} {}\r\n", next + 1, m.msgs[next].1)),
                        };
                    }
                    next += 1;
                }
                if next < m.msgs.len() {
                    self.pending = Some(Pending::Lines { uidl, next });
                } else {
                    out.raw(b".\r\n");
                }
            }
            Pending::Message { data, mut at, end } => {
                at = stuff(&data, at, end, out, BUDGET);
                if at < end {
                    self.pending = Some(Pending::Message { data, at, end });
                } else {
                    if end > 0 && !data.bytes()[..end].ends_with(b"\r\n") {
                        out.raw(b"\r\n");
                    }
                    out.raw(b".\r\n");
                }
            }
        }
    }
}

/// Writes `data[at..end]` (`at` at a line start) dot-stuffed (RFC 1939 3:
/// a line that starts with "." gets another) until `out` holds `budget`
/// bytes; the position reached, again at a line start. The runs between
/// such lines go out as slices of the mapping, not copies; short ones are
/// copied, so a message of many dot lines is bounded by the budget too.
fn stuff(data: &crate::proto::encode::Shared, mut at: usize, end: usize, out: &mut Out, budget: usize) -> usize {
    let bytes = data.bytes();
    while at < end && out.len() < budget {
        if bytes[at] == b'.' {
            out.raw(b".");
        }
        let to = memchr::memmem::find(&bytes[at..end], b"\n.").map_or(end, |i| at + i + 1);
        out.splice(data.slice(at, to - at));
        at = to;
    }
    at
}

/// A command in the TRANSACTION state.
fn transaction(m: &mut Maildrop, cmd: Command, out: &mut Out, pending: &mut Option<Pending>) -> Option<Step> {
    let number = |n: u32| -> Result<usize, &'static str> {
        let i = n as usize - 1;
        match m.msgs.get(i) {
            None => Err("-ERR There's no message with that number.\r\n"),
            Some(_) if m.deleted[i] => Err("-ERR Message is deleted.\r\n"),
            Some(_) => Ok(i),
        }
    };
    match cmd {
        Command::Stat => {
            let (n, size) = m.totals();
            out.str(&format!("+OK {n} {size}\r\n"));
        }
        Command::List(None) | Command::Uidl(None) => {
            let uidl = matches!(cmd, Command::Uidl(None));
            match uidl {
                true => out.raw(b"+OK\r\n"),
                false => {
                    let (n, size) = m.totals();
                    out.str(&format!("+OK {n} messages ({size} octets):\r\n"))
                }
            };
            *pending = Some(Pending::Lines { uidl, next: 0 });
        }
        Command::List(Some(n)) | Command::Uidl(Some(n)) => {
            match number(n) {
                Ok(i) if matches!(cmd, Command::List(_)) => out.str(&format!("+OK {n} {}\r\n", m.msgs[i].1)),
                Ok(i) => out.str(&format!("+OK {n} {}\r\n", m.uidl(i))),
                Err(e) => out.str(e),
            };
        }
        Command::Retr(n) | Command::Top(n, _) => {
            let i = match number(n) {
                Ok(i) => i,
                Err(e) => {
                    out.str(e);
                    return None;
                }
            };
            let uid = m.msgs[i].0;
            let data = {
                let mb = m.mailbox.borrow();
                mb.find(uid).map(|x| mb.message(x))
            };
            let data = match data {
                Some(Ok(d)) => d,
                None => {
                    out.raw(b"-ERR Message was expunged by another session.\r\n");
                    return None;
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, uid, "cannot read a message for POP3");
                    out.raw(b"-ERR [SYS/TEMP] The message cannot be read now.\r\n");
                    return None;
                }
            };
            let end = match cmd {
                Command::Top(_, lines) => top_end(data.bytes(), lines),
                _ => {
                    // RETR marks the message \Seen (as IMAP's BODY[] does);
                    // durable with the next commit.
                    let _ = m.mailbox.borrow_mut().change_flags(&[uid], FlagChange::add(F_SEEN, 0));
                    data.len()
                }
            };
            match cmd {
                Command::Top(..) => out.raw(b"+OK\r\n"),
                _ => out.str(&format!("+OK {} octets\r\n", m.msgs[i].1)),
            };
            *pending = Some(Pending::Message { data, at: 0, end });
        }
        Command::Dele(n) => match number(n) {
            Ok(i) => {
                m.deleted[i] = true;
                out.raw(b"+OK Marked to be deleted.\r\n");
            }
            Err(e) => {
                out.str(e);
            }
        },
        Command::Rset => {
            m.deleted.iter_mut().for_each(|d| *d = false);
            out.raw(b"+OK\r\n");
        }
        Command::Quit => {
            // The UPDATE state (RFC 1939 6).
            let uids: Vec<u32> = m.msgs.iter().zip(&m.deleted).filter(|(_, d)| **d).map(|(x, _)| x.0).collect();
            if uids.is_empty() {
                out.raw(b"+OK Logging out.\r\n");
                return Some(Step::Close);
            }
            let r = m.mailbox.borrow_mut().expunge(&uids);
            return Some(match r {
                Ok(_) => Step::AwaitDurable(m.user.durable(&m.mailbox)),
                Err(e) => {
                    tracing::warn!(error = %e, "POP3 QUIT could not expunge");
                    out.raw(b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n");
                    Step::Close
                }
            });
        }
        _ => {
            out.raw(b"-ERR Unknown command.\r\n");
        }
    }
    None
}

/// Where TOP's answer ends: the header, its blank line and `lines` lines of
/// the body.
fn top_end(b: &[u8], lines: u64) -> usize {
    let body = match memchr::memmem::find(b, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => return b.len(),
    };
    let mut at = body;
    for _ in 0..lines {
        match memchr::memchr(b'\n', &b[at..]) {
            Some(i) => at += i + 1,
            None => return b.len(),
        }
    }
    at
}
