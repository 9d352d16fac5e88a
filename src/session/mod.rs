//! The IMAP session state machine (RFC 9051 section 3): Not Authenticated,
//! Authenticated, Selected and Logout, driven by decoder events.
//!
//! It does no network I/O and reads no clock: the network layer feeds bytes,
//! calls [`Connection::step`], writes what lands in the [`Out`] buffer, and
//! performs what the returned [`Step`] asks (check a password, wait for the
//! store to sync, start TLS, wait in IDLE). Time comes in as an argument.

pub mod caps;
mod cmd;
pub mod driver;
pub mod flags;
mod mailbox;
mod search;

use std::sync::Arc;

use crate::proto::{Decoder, Event, Limits, Out};
use crate::signal::Signal;
use crate::store::{Ticket, UserStore};
use std::rc::Rc;

pub use mailbox::{Selected, Selection, Synced};

/// Settings shared by every session of a listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub limits: Arc<Limits>,
    /// Limits before authentication (see [`Limits::PRE_AUTH`]).
    pub pre_auth: Arc<Limits>,
    /// Failed logins on one connection before it is closed with BYE.
    pub max_auth_failures: u32,
    /// STARTTLS can be offered (TLS is configured and the connection is cleartext).
    pub starttls: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { limits: Arc::new(Limits::DEFAULT), pre_auth: Arc::new(Limits::PRE_AUTH), max_auth_failures: 3, starttls: false }
    }
}

/// Facts about the connection that decide what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnFacts {
    /// The connection is encrypted.
    pub tls: bool,
    /// A password may be sent on it in the clear (loopback or a trusted network).
    pub cleartext_ok: bool,
}

/// Extensions the client turned on with ENABLE (RFC 5161).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    pub rev2: bool,
    pub utf8: bool,
    pub condstore: bool,
}

/// The session's state as seen from outside (for the metrics' gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotAuthenticated,
    Authenticated,
    Selected,
    /// In IDLE (RFC 2177), authenticated or selected.
    Idle,
    Logout,
}

/// What the network layer must do before calling back in.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the output, read more input, call `step` again.
    Read,
    /// A command is part way through (its output filled the budget, or it
    /// did a slice of its work): send the output, let other connections
    /// run, then call `step` again.
    Flush,
    /// Verify these credentials, then call [`Connection::auth_done`].
    Authenticate { user: String, password: Vec<u8> },
    /// Authentication succeeded: put the connection on the user's worker,
    /// [`Connection::attach`] the user's store there, and call `step` again.
    LoggedIn(String),
    /// Send the output, then run the TLS handshake, then call `step` again.
    StartTls,
    /// Wait until the store has synced, then call [`Connection::durable_done`].
    AwaitDurable,
    /// In IDLE: wait for input (then `step`) or a change of the selected
    /// mailbox (then [`Connection::notify`]).
    Idle,
    /// Send the output and close the connection.
    Close,
}

/// Output beyond which `step` returns [`Step::Flush`]: between commands,
/// and the budget a running command fills before it stops for a flush
/// (Dovecot's imap-fetch contract: "output full, call me again"). A slow
/// reader makes a connection hold this much, not a whole response.
pub(crate) const OUTPUT_BUDGET: usize = 256 * 1024;

pub(crate) struct Authed {
    pub user: String,
    pub store: Option<Rc<UserStore>>,
}

impl Authed {
    pub fn store(&self) -> &Rc<UserStore> {
        self.store.as_ref().expect("the network layer attaches the store right after login")
    }
}

pub(crate) enum State {
    NotAuthenticated,
    Authenticated(Authed),
    Selected(Authed, Box<Selected>),
    Logout,
}

impl State {
    pub fn authed(&self) -> Option<&Authed> {
        match self {
            State::Authenticated(a) | State::Selected(a, _) => Some(a),
            _ => None,
        }
    }
}

/// A command that waits for something outside the state machine.
pub(crate) enum Wait {
    None,
    /// A password check is out (LOGIN or AUTHENTICATE).
    Auth {
        tag: String,
    },
    /// AUTHENTICATE sent a challenge and waits for the client's line.
    AuthLine {
        tag: String,
        mech: cmd::authenticate::Mechanism,
    },
    /// STARTTLS answered OK; the handshake comes next.
    StartTls,
    /// IDLE is running.
    Idle {
        tag: String,
    },
    /// An APPEND is streaming its message.
    Append(Box<cmd::append::Appending>),
    /// A store change waits to be synced before it is acknowledged.
    Durable(Box<cmd::Durable>),
    /// A command runs in slices (FETCH, SEARCH, STORE, COPY, the updates
    /// before a tagged response): see [`Cursor`].
    Running(Box<dyn Cursor>),
}

/// A command in progress whose output or work is unbounded: it does a
/// slice (until `out` holds [`OUTPUT_BUDGET`] or its own work limit) and
/// says whether it is done. It owns what it needs between slices (a
/// lazily walked sequence set, results so far), never the whole answer.
pub(crate) trait Cursor {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress;
}

pub(crate) enum Progress {
    /// Stopped at the budget: flush, then resume.
    More,
    Done(Directive),
}

/// One client's protocol state: the decoder plus the session.
pub struct Connection {
    decoder: Decoder,
    session: Session,
}

pub struct Session {
    pub(crate) cfg: Arc<SessionConfig>,
    pub(crate) state: State,
    pub(crate) enabled: Enabled,
    pub(crate) facts: ConnFacts,
    pub(crate) auth_failures: u32,
    pub(crate) wait: Wait,
    /// Fired by the selected mailbox when it changes (wakes IDLE).
    pub(crate) signal: Option<Rc<Signal>>,
}

/// What an event asks of the decoder.
pub(crate) enum Directive {
    Next,
    ExpectAuthLine,
    ExpectIdleDone,
    AcceptAppend,
    RejectAppend,
    Return(Step),
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

/// The greeting of a connection turned away at the door (over the
/// connection limits, RFC 9051 7.1.5: BYE instead of a greeting).
pub fn refusal(why: &str) -> Vec<u8> {
    let mut out = Out::new();
    out.untagged_status("BYE", None, why);
    out.buf
}

impl Connection {
    pub fn new(cfg: Arc<SessionConfig>, facts: ConnFacts) -> Self {
        Connection { decoder: Decoder::new(cfg.pre_auth.clone()), session: Session::new(cfg, facts) }
    }

    /// A connection on a listener that authenticates everyone as `user`.
    pub fn preauthenticated(cfg: Arc<SessionConfig>, facts: ConnFacts, user: String) -> Self {
        let mut c = Self::new(cfg, facts);
        c.decoder.set_limits(c.session.cfg.limits.clone());
        c.session.state = State::Authenticated(Authed { user, store: None });
        c
    }

    /// Rebuilds a connection that moved here from another worker.
    pub fn resume(s: Snapshot) -> Self {
        let mut c = Connection { decoder: Decoder::new(s.cfg.limits.clone()), session: Session::new(s.cfg, s.facts) };
        c.session.enabled = s.enabled;
        c.session.state = State::Authenticated(Authed { user: s.user, store: None });
        c.decoder.feed(&s.pending_input);
        c
    }

    /// Detaches an authenticated, idle-between-commands connection so it can
    /// move to another worker. None if it is not in such a state.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        let State::Authenticated(a) = &self.session.state else { return None };
        if !matches!(self.session.wait, Wait::None) {
            return None;
        }
        Some(Snapshot {
            user: a.user.clone(),
            enabled: self.session.enabled,
            facts: self.session.facts,
            cfg: self.session.cfg.clone(),
            pending_input: self.decoder.pending().to_vec(),
        })
    }

    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The greeting (RFC 9051 7.1): OK, or PREAUTH on a trusted listener.
    pub fn greeting(&self, out: &mut Out) {
        let caps = self.session.capabilities();
        match &self.session.state {
            State::Authenticated(a) => out.untagged_status("PREAUTH", Some(&caps), &format!("ringmail ready, logged in as {}", a.user)),
            _ => out.untagged_status("OK", Some(&caps), "ringmail ready."),
        };
    }

    /// The user the connection is logged in as.
    pub fn user(&self) -> Option<&str> {
        self.session.state.authed().map(|a| a.user.as_str())
    }

    /// The signal the selected mailbox fires on changes (set once by the
    /// network layer, which waits on it in IDLE).
    pub fn set_signal(&mut self, s: Rc<Signal>) {
        self.session.signal = Some(s);
    }

    /// What a command waits for after [`Step::AwaitDurable`]: await it,
    /// then call [`Connection::durable_done`].
    pub fn durable_ticket(&self) -> Option<Ticket> {
        match &self.session.wait {
            Wait::Durable(d) => Some(d.ticket.clone()),
            _ => None,
        }
    }

    /// Drops input received so far (bytes pipelined behind STARTTLS must not
    /// be read as commands, RFC 9051 6.2.1).
    pub fn discard_input(&mut self) {
        let limits = if self.is_authenticated() { &self.session.cfg.limits } else { &self.session.cfg.pre_auth };
        self.decoder = Decoder::new(limits.clone());
    }

    /// Gives the session its user's store (on the user's worker).
    pub fn attach(&mut self, store: Rc<UserStore>) {
        if let State::Authenticated(a) = &mut self.session.state {
            a.store = Some(store);
        }
    }

    /// Whether the connection waits for input while holding nothing: no
    /// partial command and no command in progress.
    pub fn is_quiet(&self) -> bool {
        // (Running never waits for input: `step` resumes it first.)
        self.decoder.is_empty() && matches!(self.session.wait, Wait::None | Wait::Idle { .. })
    }

    /// Whether the session is authenticated (for the autologout timer).
    pub fn is_authenticated(&self) -> bool {
        self.session.state.authed().is_some()
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.session.wait, Wait::Idle { .. })
    }

    /// Where the session is (RFC 9051 3), IDLE counted apart.
    pub fn phase(&self) -> Phase {
        match &self.session.state {
            _ if self.is_idling() => Phase::Idle,
            State::Selected(..) => Phase::Selected,
            State::Authenticated(_) => Phase::Authenticated,
            State::NotAuthenticated => Phase::NotAuthenticated,
            State::Logout => Phase::Logout,
        }
    }

    /// Processes input until the next thing the network layer must do.
    /// `now` is the current time in seconds since the Unix epoch.
    pub fn step(&mut self, now: i64, out: &mut Out) -> Step {
        loop {
            if matches!(self.session.state, State::Logout) {
                return Step::Close;
            }
            match &self.session.wait {
                Wait::Auth { .. } => return Step::Read,
                Wait::StartTls => return Step::StartTls,
                Wait::Durable(_) => return Step::AwaitDurable,
                _ => {}
            }
            if out.len() >= OUTPUT_BUDGET {
                return Step::Flush;
            }
            let directive = if matches!(self.session.wait, Wait::Running(_)) {
                let Wait::Running(mut c) = std::mem::replace(&mut self.session.wait, Wait::None) else { unreachable!("just matched") };
                match c.resume(&mut self.session, out) {
                    Progress::More => {
                        self.session.wait = Wait::Running(c);
                        return Step::Flush;
                    }
                    Progress::Done(d) => d,
                }
            } else {
                let ev = self.decoder.next();
                self.session.on_event(ev, now, out)
            };
            match directive {
                Directive::Next => {}
                Directive::ExpectAuthLine => self.decoder.expect_auth_line(),
                Directive::ExpectIdleDone => {
                    self.decoder.expect_idle_done();
                    return Step::Idle;
                }
                Directive::AcceptAppend => self.decoder.accept_append(),
                Directive::RejectAppend => {
                    if !self.decoder.reject_append() {
                        out.untagged_status("BYE", None, "Message too large to skip");
                        self.session.state = State::Logout;
                        return Step::Close;
                    }
                }
                Directive::Return(s) => return s,
            }
        }
    }

    /// Completes a LOGIN or AUTHENTICATE with the password check's result.
    pub fn auth_done(&mut self, result: crate::auth::AuthResult, out: &mut Out) -> Step {
        let step = cmd::login::finish(&mut self.session, result, out);
        if self.is_authenticated() {
            self.decoder.set_limits(self.session.cfg.limits.clone());
        }
        step
    }

    /// Completes a command whose ticket is answered; then call `step`
    /// (the command may wait again, as MOVE does for its expunge).
    pub fn durable_done(&mut self, out: &mut Out) {
        if let Directive::Return(Step::Close) = cmd::finish_durable(&mut self.session, out) {
            self.session.state = State::Logout;
        }
    }

    /// The TLS handshake finished: the session is now encrypted.
    pub fn tls_started(&mut self) {
        self.session.facts.tls = true;
        self.session.facts.cleartext_ok = true;
        self.session.wait = Wait::None;
    }

    /// Mailbox changes while idling: sends the untagged updates (RFC 2177),
    /// a budget's worth at a time. True: more follow (flush, call again).
    pub fn notify(&mut self, out: &mut Out) -> bool {
        if let State::Selected(_, sel) = &mut self.session.state {
            return sel.sync_step(out, self.session.enabled, true, OUTPUT_BUDGET) == Synced::More;
        }
        false
    }

    /// `* OK Still here` for a session in IDLE, keeping middleboxes open.
    pub fn keepalive(&self, out: &mut Out) {
        out.untagged_status("OK", None, "Still here");
    }

    /// Autologout (RFC 9051 5.4).
    pub fn timed_out(&mut self, out: &mut Out) {
        out.untagged_status("BYE", None, "Autologout; idle for too long");
        self.session.state = State::Logout;
    }

    /// The user's mail store cannot be opened: the session ends.
    pub fn store_unavailable(&mut self, out: &mut Out) {
        out.untagged_status("BYE", Some("UNAVAILABLE"), "Mail store unavailable");
        self.session.state = State::Logout;
    }

    /// The server cannot take the session further now (out of
    /// descriptors moving it to its user's worker): the session ends.
    pub fn busy(&mut self, out: &mut Out) {
        out.untagged_status("BYE", Some("UNAVAILABLE"), "Server busy, try again");
        self.session.state = State::Logout;
    }

    /// The server is stopping.
    pub fn shutdown(&mut self, out: &mut Out) {
        out.untagged_status("BYE", None, "Server shutting down");
        self.session.state = State::Logout;
    }
}

impl Session {
    fn new(cfg: Arc<SessionConfig>, facts: ConnFacts) -> Self {
        Session { cfg, state: State::NotAuthenticated, enabled: Enabled::default(), facts, auth_failures: 0, wait: Wait::None, signal: None }
    }

    /// The CAPABILITY list for the current state (without the "CAPABILITY" word).
    pub fn capabilities(&self) -> String {
        caps::list(self.state.authed().is_some(), self.facts, self.cfg.starttls, self.cfg.limits.message_max)
    }

    fn on_event(&mut self, ev: Event<'_>, now: i64, out: &mut Out) -> Directive {
        match ev {
            Event::NeedMore => Directive::Return(Step::Read),
            Event::Command(c) => {
                out.begin(Some(c.body.name()));
                cmd::dispatch(self, c, now, out)
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
                self.state = State::Logout;
                Directive::Return(Step::Close)
            }
            Event::AuthLine(line) => cmd::authenticate::line(self, line, out),
            Event::IdleDone(ok) => cmd::idle::done(self, ok, out),
            Event::AppendStart(h) => {
                out.begin(Some("APPEND"));
                cmd::append::start(self, h, now, out)
            }
            Event::AppendData(d) => cmd::append::data(self, d, out),
            Event::AppendEnd(r) => cmd::append::end(self, r, out),
        }
    }
}
