//! One client's protocol state, the decoder plus the session, and the
//! loop the network layer drives: bytes in, responses and [`Step`]s out.

use std::rc::Rc;
use std::sync::Arc;

use super::cmd;
use super::config::{ConnFacts, Enabled, SessionConfig};
use super::state::{Directive, Phase, Progress, Session, State, Step, Wait, OUTPUT_BUDGET};
use crate::proto::{Decoder, Event, Out};
use crate::signal::Signal;
use crate::store::{Ticket, UserStore};

/// The greeting of a connection turned away at the door (over the
/// connection limits, RFC 9051 7.1.5: BYE instead of a greeting).
pub fn refusal(why: &str) -> Vec<u8> {
    let mut out = Out::new();
    out.untagged_status("BYE", None, why);
    out.buf
}

pub struct Connection {
    decoder: Decoder,
    session: Session,
}

/// What a session carries when it moves to another worker: plain data only.
#[derive(Debug)]
pub struct Snapshot {
    pub user: String,
    pub enabled: Enabled,
    pub facts: ConnFacts,
    pub cfg: Arc<SessionConfig>,
    /// Input already read but not yet processed.
    pub pending_input: Vec<u8>,
}

impl Connection {
    pub fn new(cfg: Arc<SessionConfig>, facts: ConnFacts) -> Self {
        Connection { decoder: Decoder::new(cfg.pre_auth.clone()), session: Session::new(cfg, facts) }
    }

    /// A connection on a listener that authenticates everyone as `user`.
    pub fn preauthenticated(cfg: Arc<SessionConfig>, facts: ConnFacts, user: String) -> Self {
        let mut c = Self::new(cfg, facts);
        c.decoder.set_limits(c.session.cx.cfg.limits.clone());
        c.session.state = State::Attaching(user);
        c
    }

    /// Rebuilds a connection that moved here from another worker.
    pub fn resume(s: Snapshot) -> Self {
        let mut c = Connection { decoder: Decoder::new(s.cfg.limits.clone()), session: Session::new(s.cfg, s.facts) };
        c.session.cx.enabled = s.enabled;
        c.session.state = State::Attaching(s.user);
        c.decoder.feed(&s.pending_input);
        c
    }

    /// Detaches a connection that just logged in (its store not attached
    /// yet, no command in progress) so it can move to its user's worker.
    /// None if it is not in such a state.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        let State::Attaching(user) = &self.session.state else { return None };
        if !matches!(self.session.cx.wait, Wait::None) {
            return None;
        }
        let cx = &self.session.cx;
        Some(Snapshot { user: user.clone(), enabled: cx.enabled, facts: cx.facts, cfg: cx.cfg.clone(), pending_input: self.decoder.pending().to_vec() })
    }

    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The greeting (RFC 9051 7.1): OK, or PREAUTH on a trusted listener.
    pub fn greeting(&self, out: &mut Out) {
        let caps = self.session.capabilities();
        match self.session.user() {
            Some(user) => out.untagged_status("PREAUTH", Some(&caps), &format!("ringmail ready, logged in as {user}")),
            None => out.untagged_status("OK", Some(&caps), "ringmail ready."),
        };
    }

    /// The user the connection is logged in as.
    pub fn user(&self) -> Option<&str> {
        self.session.user()
    }

    /// The signal the selected mailbox fires on changes (set once by the
    /// network layer, which waits on it in IDLE).
    pub fn set_signal(&mut self, s: Rc<Signal>) {
        self.session.cx.signal = Some(s);
    }

    /// What a command waits for after [`Step::AwaitDurable`]: await it,
    /// then call [`Connection::durable_done`].
    pub fn durable_ticket(&self) -> Option<Ticket> {
        match &self.session.cx.wait {
            Wait::Durable(d) => Some(d.ticket.clone()),
            _ => None,
        }
    }

    /// Drops input received so far (bytes pipelined behind STARTTLS must not
    /// be read as commands, RFC 9051 6.2.1).
    pub fn discard_input(&mut self) {
        let cfg = &self.session.cx.cfg;
        let limits = if self.is_authenticated() { &cfg.limits } else { &cfg.pre_auth };
        self.decoder = Decoder::new(limits.clone());
    }

    /// Gives the session its user's store (on the user's worker).
    pub fn attach(&mut self, store: Rc<UserStore>) {
        if let State::Attaching(name) = &mut self.session.state {
            let name = std::mem::take(name);
            self.session.state = State::Authenticated(super::state::User { name, store });
        }
    }

    /// Whether the connection waits for input while holding nothing: no
    /// partial command and no command in progress.
    pub fn is_quiet(&self) -> bool {
        // (Running never waits for input: `step` resumes it first.)
        self.decoder.is_empty() && matches!(self.session.cx.wait, Wait::None | Wait::Idle { .. })
    }

    /// Whether the session is authenticated (for the autologout timer).
    pub fn is_authenticated(&self) -> bool {
        self.session.user().is_some()
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.session.cx.wait, Wait::Idle { .. })
    }

    /// Where the session is (RFC 9051 3), IDLE counted apart.
    pub fn phase(&self) -> Phase {
        match &self.session.state {
            _ if self.is_idling() => Phase::Idle,
            State::Selected(..) => Phase::Selected,
            State::Attaching(_) | State::Authenticated(_) => Phase::Authenticated,
            State::NotAuthenticated => Phase::NotAuthenticated,
            State::Logout => Phase::Logout,
        }
    }

    /// Processes input until the next thing the network layer must do.
    /// `now` is the current time in seconds since the Unix epoch.
    pub fn step(&mut self, now: i64, out: &mut Out) -> Step {
        loop {
            match &self.session.state {
                State::Logout => return Step::Close,
                State::Attaching(user) => return Step::LoggedIn(user.clone()),
                _ => {}
            }
            match &self.session.cx.wait {
                Wait::Auth { .. } => return Step::Read,
                Wait::StartTls => return Step::StartTls,
                Wait::Compress => return Step::Compress,
                Wait::Durable(_) => return Step::AwaitDurable,
                _ => {}
            }
            if out.len() >= OUTPUT_BUDGET {
                return Step::Flush;
            }
            let directive = if matches!(self.session.cx.wait, Wait::Running(_)) {
                let Wait::Running(mut c) = std::mem::replace(&mut self.session.cx.wait, Wait::None) else { unreachable!("just matched") };
                match c.resume(&mut self.session, out) {
                    Progress::More => {
                        self.session.cx.wait = Wait::Running(c);
                        return Step::Flush;
                    }
                    Progress::Done(d) => d,
                }
            } else if self.decoder.is_empty()
                && self.is_listening()
                && matches!(self.session.cx.wait, Wait::None)
                && super::cmd::notify::push(&mut self.session, false, out)
            {
                // No command in progress: NOTIFY's news went out, more follow.
                return Step::Flush;
            } else {
                let ev = self.decoder.next();
                on_event(&mut self.session, ev, now, out)
            };
            if let Some(step) = self.apply(directive, out) {
                return step;
            }
        }
    }

    /// Carries out what a command asked; Some: hand that step out.
    fn apply(&mut self, directive: Directive, out: &mut Out) -> Option<Step> {
        match directive {
            Directive::Next => {}
            Directive::ExpectAuthLine => self.decoder.expect_auth_line(),
            Directive::ExpectIdleDone => {
                self.decoder.expect_idle_done();
                return Some(Step::Idle);
            }
            Directive::AcceptAppend => self.decoder.accept_append(),
            Directive::RejectAppend => {
                if !self.decoder.reject_append() {
                    out.untagged_status("BYE", None, "Message too large to skip");
                    self.end();
                    return Some(Step::Close);
                }
            }
            Directive::Run(c) => self.session.cx.wait = Wait::Running(c),
            Directive::Await(d) => {
                self.session.cx.wait = Wait::Durable(d);
                return Some(Step::AwaitDurable);
            }
            Directive::Return(Step::Close) => {
                self.end();
                return Some(Step::Close);
            }
            Directive::Return(s) => return Some(s),
        }
        None
    }

    /// Completes a LOGIN or AUTHENTICATE with the password check's result.
    pub fn auth_done(&mut self, result: crate::auth::AuthResult, out: &mut Out) -> Step {
        let step = cmd::login::finish(&mut self.session, result, out);
        if self.is_authenticated() {
            self.decoder.set_limits(self.session.cx.cfg.limits.clone());
        }
        step
    }

    /// Completes a command whose ticket is answered; then call `step`
    /// (the command may wait again, as MOVE does for its expunge).
    pub fn durable_done(&mut self, out: &mut Out) {
        let Wait::Durable(d) = std::mem::replace(&mut self.session.cx.wait, Wait::None) else { return };
        let r = d.ticket.result().unwrap_or_else(|| Err(std::io::Error::other("the sync did not finish")));
        let directive = (d.then)(r, out);
        // A close is seen by the next `step`.
        let _ = self.apply(directive, out);
    }

    /// The TLS handshake finished: the session is now encrypted.
    pub fn tls_started(&mut self) {
        let cx = &mut self.session.cx;
        cx.facts.tls = true;
        cx.facts.cleartext_ok = true;
        cx.wait = Wait::None;
    }

    /// Compression is on both ways (RFC 4978): input the client sent before
    /// it saw the OK cannot be part of the compressed stream, so it is
    /// dropped, as after STARTTLS.
    pub fn compression_started(&mut self) {
        self.discard_input();
        let cx = &mut self.session.cx;
        cx.facts.compressed = true;
        cx.wait = Wait::None;
    }

    /// Mailbox changes while idling: sends the untagged updates (RFC 2177),
    /// and what NOTIFY asked for (RFC 5465), a budget's worth at a time.
    /// True: more follow (flush, call again).
    pub fn notify(&mut self, out: &mut Out) -> bool {
        let idling = self.is_idling();
        super::cmd::notify::push(&mut self.session, idling, out)
    }

    /// Whether changes wake this session between commands too (NOTIFY):
    /// after its signal fires, call `step`, which sends them once no
    /// command is in progress.
    pub fn is_listening(&self) -> bool {
        self.session.cx.notify.is_some()
    }

    /// `* OK Still here` for a session in IDLE, keeping middleboxes open.
    pub fn keepalive(&self, out: &mut Out) {
        out.untagged_status("OK", None, "Still here");
    }

    /// Autologout (RFC 9051 5.4).
    pub fn timed_out(&mut self, out: &mut Out) {
        out.untagged_status("BYE", None, "Autologout; idle for too long");
        self.end();
    }

    /// The user's mail store cannot be opened: the session ends.
    pub fn store_unavailable(&mut self, out: &mut Out) {
        out.untagged_status("BYE", Some("UNAVAILABLE"), "Mail store unavailable");
        self.end();
    }

    /// The server cannot take the session further now (out of
    /// descriptors moving it to its user's worker): the session ends.
    pub fn busy(&mut self, out: &mut Out) {
        out.untagged_status("BYE", Some("UNAVAILABLE"), "Server busy, try again");
        self.end();
    }

    /// The client's compressed stream is not valid DEFLATE (RFC 4978): no
    /// later command can be read, so the session ends.
    pub fn bad_compression(&mut self, out: &mut Out) {
        out.untagged_status("BYE", None, "Invalid compressed data");
        self.end();
    }

    /// The user's mail is moving to another backend (RFC 5530 UNAVAILABLE).
    pub fn moving(&mut self, out: &mut Out) {
        out.untagged_status("BYE", Some("UNAVAILABLE"), super::reply::MOVING);
        self.end();
    }

    /// The server is stopping.
    pub fn shutdown(&mut self, out: &mut Out) {
        out.untagged_status("BYE", None, "Server shutting down");
        self.end();
    }

    /// Into the Logout state, leaving the selected mailbox.
    fn end(&mut self) {
        self.session.deselect();
        self.session.state = State::Logout;
    }
}

/// One decoder event: a command, a piece of a literal, a protocol error.
fn on_event(s: &mut Session, ev: Event<'_>, now: i64, out: &mut Out) -> Directive {
    match ev {
        Event::NeedMore => Directive::Return(Step::Read),
        Event::Command(c) => {
            out.begin(Some(c.body.name()));
            cmd::dispatch(s, c, now, out)
        }
        Event::Continue => {
            out.raw(b"+ Ready for literal data\r\n");
            Directive::Next
        }
        Event::Bad { tag, message } => {
            out.begin(None);
            out.tagged(tag.as_deref().unwrap_or("*"), "BAD", None, &message);
            Directive::Next
        }
        Event::Fatal(message) => {
            out.untagged_status("BYE", None, message);
            Directive::Return(Step::Close)
        }
        Event::AuthLine(line) => cmd::authenticate::line(&mut s.cx, line, out),
        Event::IdleDone(ok) => cmd::idle::done(s, ok, out),
        Event::AppendStart(h) => {
            out.begin(Some("APPEND"));
            cmd::append::start(s, h, now, out)
        }
        Event::AppendData(d) => {
            if let Wait::Streaming(a) = &mut s.cx.wait {
                a.data(d);
            }
            Directive::Next
        }
        Event::AppendNext(m) => match std::mem::replace(&mut s.cx.wait, Wait::None) {
            Wait::Streaming(mut a) => match a.more(m, out) {
                Ok(()) => {
                    s.cx.wait = Wait::Streaming(a);
                    Directive::AcceptAppend
                }
                // What was received so far is dropped with `a`.
                Err(_) => Directive::RejectAppend,
            },
            other => {
                s.cx.wait = other;
                Directive::RejectAppend
            }
        },
        Event::AppendEnd(r) => match std::mem::replace(&mut s.cx.wait, Wait::None) {
            Wait::Streaming(a) => a.end(r, out),
            other => {
                s.cx.wait = other;
                Directive::Next
            }
        },
    }
}
