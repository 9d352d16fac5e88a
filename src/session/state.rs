//! The session's state (RFC 9051 3) and the vocabulary commands speak:
//! what a command returns ([`Directive`]), what it waits for ([`Wait`]),
//! and how one that runs in slices resumes ([`Cursor`]).
//!
//! A session is two parts: [`State`] (who is logged in, which mailbox is
//! selected) and [`Cx`], everything else. Commands get the state they need
//! borrowed apart from the rest ([`Authed`], [`InMailbox`]), so a command
//! that needs a selected mailbox is handed one; the command table
//! (`cmd/mod.rs`) is the one place that checks it is there.

use std::rc::Rc;
use std::sync::Arc;

use super::caps;
use super::config::{ConnFacts, Enabled, SessionConfig};
use super::selected::Selected;
use crate::auth::sasl::Mechanism;
use crate::proto::{Mailbox, Out};
use crate::signal::Signal;
use crate::store::{MailboxError, MailboxRef, Ticket, UserStore};

/// Output beyond which `step` returns [`Step::Flush`]: between commands,
/// and the budget a running command fills before it stops for a flush
/// (Dovecot's imap-fetch contract: "output full, call me again"). A slow
/// reader makes a connection hold this much, not a whole response.
pub(crate) const OUTPUT_BUDGET: usize = 256 * 1024;

/// What the network layer must do before calling back in.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the output, read more input, call `step` again.
    Read,
    /// A command is part way through (its output filled the budget, or it
    /// did a slice of its work): send the output, let other connections
    /// run, then call `step` again.
    Flush,
    /// Verify these credentials, then call `Connection::auth_done`.
    Authenticate { user: String, password: Vec<u8> },
    /// Authentication succeeded: put the connection on the user's worker,
    /// `Connection::attach` the user's store there, and call `step` again.
    LoggedIn(String),
    /// Send the output, then run the TLS handshake, then call `step` again.
    StartTls,
    /// Send the output, then compress everything after it both ways
    /// (RFC 4978), then call `Connection::compression_started`.
    Compress,
    /// Wait until the store has synced, then call `Connection::durable_done`.
    AwaitDurable,
    /// In IDLE: wait for input (then `step`) or a change of the selected
    /// mailbox (then `Connection::notify`).
    Idle,
    /// Send the output and close the connection.
    Close,
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

/// A logged-in user and their mail.
pub(crate) struct User {
    pub name: String,
    pub store: Rc<UserStore>,
}

impl User {
    /// A mailbox by name, with the RFC 5530 code for a missing one.
    pub fn open_mailbox(&self, name: &str) -> Result<MailboxRef, (Option<&'static str>, String)> {
        self.store.mailbox(name).map_err(|e| match e {
            MailboxError::NonExistent => (Some("NONEXISTENT"), format!("Mailbox doesn't exist: {name}")),
            MailboxError::NoSelect => (Some("NONEXISTENT"), format!("Mailbox is not selectable: {name}")),
            MailboxError::Io(e) => {
                tracing::error!(error = %e, mailbox = name, "cannot open mailbox");
                (Some("SERVERBUG"), "Internal error opening mailbox".to_string())
            }
            _ => (Some("CANNOT"), format!("Cannot open mailbox {name}")),
        })
    }

    /// A ticket for the changes made so far to one of the user's mailboxes.
    pub fn durable(&self, mb: &MailboxRef) -> Ticket {
        self.store.durable(mb)
    }

    /// A ticket for the user's list of mailboxes and subscriptions.
    pub fn manifest_durable(&self) -> Ticket {
        self.store.manifest_durable()
    }
}

pub(crate) enum State {
    NotAuthenticated,
    /// Logged in; the network layer attaches the user's store next (on
    /// the user's worker).
    Attaching(String),
    Authenticated(User),
    Selected(User, Box<Selected>),
    Logout,
}

/// Everything of a session but its [`State`].
pub(crate) struct Cx {
    pub cfg: Arc<SessionConfig>,
    pub enabled: Enabled,
    pub facts: ConnFacts,
    pub auth_failures: u32,
    pub wait: Wait,
    /// Fired by the selected mailbox when it changes (wakes IDLE).
    pub signal: Option<Rc<Signal>>,
    /// What NOTIFY (RFC 5465) asked to be told; None also after NOTIFY NONE.
    pub notify: Option<Box<super::notify::Notify>>,
    /// Whether the command in progress may be answered with EXPUNGE
    /// responses (RFC 9051 7.5.1: not during FETCH, STORE or SEARCH); set
    /// from the command table.
    pub expunge_ok: bool,
}

impl Cx {
    /// Whether mailbox names are UTF-8 on the wire (IMAP4rev2, RFC 9051 5.1).
    pub fn utf8_names(&self) -> bool {
        self.enabled.rev2 || self.enabled.utf8
    }

    /// A mailbox name from the client, decoded: UTF-8 under IMAP4rev2,
    /// modified UTF-7 otherwise.
    pub fn mailbox_name(&self, m: &Mailbox) -> Result<String, &'static str> {
        if self.utf8_names() {
            String::from_utf8(m.0.clone()).map_err(|_| "Mailbox name is not valid UTF-8")
        } else {
            crate::proto::utf7::decode(&m.0).ok_or("Mailbox name is not valid modified UTF-7")
        }
    }
}

pub struct Session {
    pub(crate) cx: Cx,
    pub(crate) state: State,
}

/// An authenticated session, borrowed apart: the rest of the session and
/// the user.
pub(crate) struct Authed<'a> {
    pub cx: &'a mut Cx,
    pub user: &'a User,
}

/// A session with a mailbox selected, borrowed apart.
pub(crate) struct InMailbox<'a> {
    pub cx: &'a mut Cx,
    pub user: &'a User,
    pub sel: &'a mut Selected,
}

impl Session {
    pub(crate) fn new(cfg: Arc<SessionConfig>, facts: ConnFacts) -> Self {
        let cx = Cx { cfg, enabled: Enabled::default(), facts, auth_failures: 0, wait: Wait::None, signal: None, notify: None, expunge_ok: true };
        Session { cx, state: State::NotAuthenticated }
    }

    /// The user logged in (or logging in).
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Attaching(name) => Some(name),
            State::Authenticated(u) | State::Selected(u, _) => Some(&u.name),
            State::NotAuthenticated | State::Logout => None,
        }
    }

    pub(crate) fn authed(&mut self) -> Option<Authed<'_>> {
        match &self.state {
            State::Authenticated(user) | State::Selected(user, _) => Some(Authed { cx: &mut self.cx, user }),
            _ => None,
        }
    }

    pub(crate) fn in_mailbox(&mut self) -> Option<InMailbox<'_>> {
        match &mut self.state {
            State::Selected(user, sel) => Some(InMailbox { cx: &mut self.cx, user, sel }),
            _ => None,
        }
    }

    /// Leaves the selected mailbox (back to Authenticated), returning it.
    pub(crate) fn deselect(&mut self) -> Option<Box<Selected>> {
        if !matches!(self.state, State::Selected(..)) {
            return None;
        }
        let State::Selected(user, sel) = std::mem::replace(&mut self.state, State::Logout) else { return None };
        sel.close();
        self.state = State::Authenticated(user);
        Some(sel)
    }

    /// Enters the Selected state with `sel` (from Authenticated, or from
    /// Selected, replacing the mailbox).
    pub(crate) fn enter(&mut self, sel: Box<Selected>) {
        // NOTIFY's selected group follows the session to its new mailbox.
        if super::notify::watches_selected(&self.cx.notify) {
            sel.watch(true);
        }
        self.state = match std::mem::replace(&mut self.state, State::Logout) {
            State::Authenticated(user) | State::Selected(user, _) => State::Selected(user, sel),
            other => other,
        };
    }

    /// The CAPABILITY list for the current state (without the "CAPABILITY" word).
    pub fn capabilities(&self) -> String {
        caps::list(self.user().is_some(), self.cx.facts, self.cx.cfg.starttls, self.cx.cfg.limits.message_max)
    }
}

/// What a command asks of the connection once it has returned.
pub(crate) enum Directive {
    Next,
    ExpectAuthLine,
    ExpectIdleDone,
    AcceptAppend,
    RejectAppend,
    /// Run this in slices, the first right away (see [`Cursor`]).
    Run(Box<dyn Cursor>),
    /// Answer once the store has synced (see [`Durable`]).
    Await(Box<Durable>),
    /// Hand this step to the network layer; [`Step::Close`] ends the session.
    Return(Step),
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
        mech: Mechanism,
    },
    /// STARTTLS answered OK; the handshake comes next.
    StartTls,
    /// COMPRESS answered OK; compression starts right after that line.
    Compress,
    /// IDLE is running.
    Idle {
        tag: String,
    },
    /// A literal is streaming in (APPEND).
    Streaming(Box<dyn Streaming>),
    /// A store change waits to be synced before it is acknowledged.
    Durable(Box<Durable>),
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

/// A [`Cursor`] of a command valid only with a mailbox selected (FETCH,
/// STORE, SEARCH, COPY, MOVE): it resumes with the mailbox in hand.
pub(crate) trait MailboxCursor {
    fn resume(&mut self, m: InMailbox<'_>, out: &mut Out) -> Progress;
}

/// Runs a [`MailboxCursor`] in slices.
pub(crate) fn run_in_mailbox(c: impl MailboxCursor + 'static) -> Directive {
    Directive::Run(Box::new(OnMailbox(c)))
}

struct OnMailbox<C>(C);

impl<C: MailboxCursor> Cursor for OnMailbox<C> {
    fn resume(&mut self, s: &mut Session, out: &mut Out) -> Progress {
        match s.in_mailbox() {
            Some(m) => self.0.resume(m, out),
            // Only a deleted mailbox ends the Selected state under a
            // running command, and that ends the session (BYE) first.
            None => Progress::Done(Directive::Next),
        }
    }
}

pub(crate) enum Progress {
    /// Stopped at the budget: flush, then resume.
    More,
    Done(Directive),
}

/// A command receiving a literal as it streams in.
pub(crate) trait Streaming {
    fn data(&mut self, d: &[u8]);
    /// The literal ended and another message follows (MULTIAPPEND); Err:
    /// it is refused, the answer (written) ends the command.
    fn more(&mut self, m: crate::proto::AppendMore, out: &mut Out) -> Result<(), Directive>;
    /// The literal ended (Err: it was malformed, with the reason).
    fn end(self: Box<Self>, r: Result<(), String>, out: &mut Out) -> Directive;
}

/// What a command does once its changes are durable, or could not be made so.
pub(crate) type Then = Box<dyn FnOnce(std::io::Result<()>, &mut Out) -> Directive>;

/// A command waiting for the store to sync before it answers.
pub(crate) struct Durable {
    pub ticket: Ticket,
    pub then: Then,
}
