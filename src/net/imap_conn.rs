//! The I/O side of one IMAP connection: feeds bytes to the sans-io
//! [`Connection`], writes what it produces, and carries out its [`Step`]s:
//! password checks off the event loop, moving to the user's worker, waiting
//! for group commit, waiting in IDLE. It never interprets a command.
//!
//! Idle connections are what a mail server has most of, so waiting is made
//! cheap: the connection's state lives in one heap block, every step but the
//! wait runs in a boxed future (so the task itself stays a few hundred
//! bytes), no read or write buffer is held while waiting (readiness first,
//! then a pooled buffer), and timeouts are deadlines checked by the worker's
//! sweeper instead of a timer per connection.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::compress::Compression;
use super::context::{detach, Migrant, Registration, WorkerCtx, WorkerMsg};
use super::guard;
use super::handshake;
use crate::auth::limiter::ConnGuard;
use crate::metrics::{self, ConnState, Outcome};
use crate::proto::{Out, Status};
use crate::session::{Connection, Phase, Step};
use crate::signal::Signal;
use ringmail_kit::tls::{self, Input};

/// Says BYE to a connection refused at the door (limits).
pub async fn refuse(mut stream: TcpStream, why: &'static str) {
    let _ = stream.write_all(crate::session::refusal(why)).await;
    guard::linger_close(&mut stream).await;
}

/// Everything one connection holds, in one heap block.
struct Conn {
    stream: TcpStream,
    /// The TLS state once the connection is encrypted (implicit TLS or
    /// after STARTTLS).
    tls: Option<Box<rustls::ServerConnection>>,
    /// COMPRESS=DEFLATE, once the client turned it on (beneath TLS).
    zip: Option<Box<Compression>>,
    conn: Connection,
    out: Out,
    reg: Registration,
    signal: Rc<Signal>,
    guard: ConnGuard,
    /// The state this connection is counted under in the metrics.
    counted: Gauged,
    /// When input last arrived: the start of the commands it completes.
    input_at: Instant,
}

/// The metrics' state gauge for one connection; leaves it when dropped
/// (however the connection ends, a panic included).
struct Gauged(Option<ConnState>);

impl Gauged {
    fn set(&mut self, state: Option<ConnState>) {
        if self.0 != state {
            let from = std::mem::replace(&mut self.0, state);
            metrics::with_worker(|m| m.conn_state(from, state));
        }
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.set(None);
    }
}

/// What a wait ended with.
enum Woke {
    Input,
    Signal,
}

/// What to do after a wake-up.
enum Next {
    /// Keep waiting (the deadline stays as it was).
    Wait,
    Step(Step),
    End,
}

/// The one await an idle connection sits in: readiness or its signal
/// (mailbox change, shutdown, deadline). A few dozen bytes of future.
async fn wait(stream: &TcpStream, signal: &Signal) -> std::io::Result<Woke> {
    monoio::select! {
        // Not relaxed: with epoll, readiness cached from an earlier read may be
        // stale; the precise check clears it instead of waking at once (with
        // io_uring this is a PollAdd either way).
        r = stream.readable(false) => r.map(|_| Woke::Input),
        _ = signal.wait() => Ok(Woke::Signal),
    }
}

impl Conn {
    /// Writes everything in `out`, from its buffer and shared mappings.
    async fn flush(&mut self) -> std::io::Result<()> {
        let out = &mut self.out;
        if out.is_empty() {
            return Ok(());
        }
        let len = out.len() as u64;
        let input_at = self.input_at;
        metrics::with_worker(|m| {
            m.bytes_out.fetch_add(len, Relaxed);
            for c in out.completions.drain(..) {
                let outcome = match c.status {
                    Status::Ok => Outcome::Ok,
                    Status::No => Outcome::No,
                    Status::Bad => Outcome::Bad,
                };
                // IDLE's time is the client's, not the server's.
                let latency = (c.command != Some("IDLE")).then(|| input_at.elapsed().as_micros() as u64);
                m.command(c.command.unwrap_or(metrics::INVALID), outcome, latency);
            }
        });
        if let Some(z) = self.zip.as_mut() {
            let r = z.write(&mut self.stream, self.tls.as_deref_mut(), &self.reg.ctx().pool, out.parts()).await;
            out.clear();
            return r;
        }
        super::iovec::send(&mut self.stream, self.tls.as_deref_mut(), out).await
    }

    /// A pooled output buffer, so responses do not grow one from nothing
    /// (which also keeps short-lived allocations away from long-lived ones).
    fn out_buffer(&mut self) {
        if self.out.buf.capacity() == 0 {
            self.out.buf = self.reg.ctx().pool.get();
        }
    }

    /// Gives the connection's buffers back to the pool while it waits.
    fn release(&mut self) {
        let pool = &self.reg.ctx().pool;
        if self.conn.is_quiet() {
            let d = self.conn.decoder();
            if d.is_empty() {
                pool.put(d.take_buffer());
                d.shrink();
            }
        }
        pool.put(std::mem::take(&mut self.out.buf));
        if let Some(z) = self.zip.as_mut() {
            z.release(pool);
        }
        if self.out.splices.capacity() > 0 {
            self.out.splices = Vec::new();
        }
        if self.out.completions.capacity() > 0 {
            self.out.completions = Vec::new();
        }
    }

    /// Before waiting: send what is pending, let go of buffers, and arm the
    /// deadline for this kind of wait.
    async fn prepare(&mut self, idle: bool) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        self.release();
        self.count_as(match self.conn.phase() {
            Phase::NotAuthenticated => Some(ConnState::NotAuthenticated),
            Phase::Authenticated => Some(ConnState::Authenticated),
            Phase::Selected => Some(ConnState::Selected),
            Phase::Idle => Some(ConnState::Idle),
            Phase::Logout => None,
        });
        let l = &self.reg.ctx().server.config.limits;
        let deadline = if idle {
            Instant::now() + l.idle_keepalive
        } else if self.conn.is_authenticated() {
            Instant::now() + l.idle_timeout
        } else {
            // Counted from connect, not reset by traffic: a client sending a
            // byte (or a NOOP) every few seconds does not stay unauthenticated.
            self.guard.since() + l.login_timeout
        };
        self.reg.arm(deadline);
        true
    }

    /// Moves this connection between the metrics' state gauges.
    fn count_as(&mut self, state: Option<ConnState>) {
        self.counted.set(state);
    }

    /// Reads what is available into the decoder, using a pooled buffer.
    async fn read(&mut self) -> std::io::Result<Input> {
        let d = self.conn.decoder();
        let mut buf = d.take_buffer();
        if buf.capacity() == 0 {
            buf = self.reg.ctx().pool.get();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(super::pool::BUF_SIZE);
        }
        let len = buf.len();
        let r = match (self.zip.as_mut(), self.tls.as_mut()) {
            (Some(z), tls) => {
                let r = z.read(&mut self.stream, tls.map(|t| &mut **t), &self.reg.ctx().pool, &mut buf).await;
                self.conn.decoder().restore_buffer(buf);
                r
            }
            (None, Some(t)) => {
                let r = tls::read(&mut self.stream, t, &mut buf).await;
                self.conn.decoder().restore_buffer(buf);
                r
            }
            (None, None) => {
                let (r, slice) = self.stream.read(monoio::buf::IoBufMut::slice_mut(buf, len..)).await;
                self.conn.decoder().restore_buffer(slice.into_inner());
                r.map(|n| if n == 0 { Input::Eof } else { Input::Data })
            }
        };
        if let Ok(Input::Data) = r {
            let got = self.conn.decoder().pending().len().saturating_sub(len) as u64;
            metrics::with_worker(|m| m.bytes_in.fetch_add(got, Relaxed));
            self.input_at = Instant::now();
        }
        r
    }

    async fn after_wake(&mut self, woke: std::io::Result<Woke>, idle: bool) -> Next {
        match woke {
            Err(_) => Next::End,
            Ok(Woke::Input) => match self.read().await {
                Err(e) if ringmail_kit::deflate::is_invalid_stream(&e) => {
                    self.out_buffer();
                    self.conn.bad_compression(&mut self.out);
                    Next::Step(Step::Close)
                }
                Ok(Input::Eof) | Err(_) => Next::End,
                Ok(Input::Nothing) => Next::Wait,
                Ok(Input::Data) => {
                    self.out_buffer();
                    Next::Step(self.conn.step(WorkerCtx::now(), &mut self.out))
                }
            },
            Ok(Woke::Signal) => {
                if self.reg.ctx().stopping.get() {
                    self.conn.shutdown(&mut self.out);
                    return Next::Step(Step::Close);
                }
                if self.conn.user().is_some_and(|u| self.reg.ctx().store.is_held(u)) {
                    // `ringmail user move`: the client reconnects and the
                    // proxy sends it to the user's new backend.
                    self.out_buffer();
                    self.conn.moving(&mut self.out);
                    return Next::Step(Step::Close);
                }
                if self.reg.take_expired() {
                    if idle {
                        // RFC 2177: IDLE is not timed out; a keepalive keeps NATs open.
                        self.conn.keepalive(&mut self.out);
                        return Next::Step(Step::Idle);
                    }
                    self.conn.timed_out(&mut self.out);
                    return Next::Step(Step::Close);
                }
                if idle {
                    self.out_buffer();
                    loop {
                        let more = self.conn.notify(&mut self.out);
                        if !self.out.is_empty() && self.flush().await.is_err() {
                            return Next::End;
                        }
                        if !more {
                            break;
                        }
                    }
                    self.release();
                } else if self.conn.is_listening() {
                    // NOTIFY: `step` sends the news once no command is in
                    // progress.
                    self.out_buffer();
                    return Next::Step(self.conn.step(WorkerCtx::now(), &mut self.out));
                }
                Next::Wait
            }
        }
    }

    /// Checks a password: from the cache of verified credentials, or with the
    /// slow hash on the blocking pool so the worker keeps serving. A failure
    /// is answered only after the growing per-IP delay.
    async fn authenticate(&mut self, user: String, password: Vec<u8>) -> Step {
        let result = super::login::check(self.reg.ctx(), self.guard.ip(), &user, &password).await;
        self.conn.auth_done(result, &mut self.out)
    }

    /// A user logged in: serve them here if their mail lives on this worker;
    /// otherwise hand the connection to that worker (None).
    async fn logged_in(&mut self, user: String) -> Option<Result<Step, (usize, std::net::TcpStream)>> {
        if self.reg.ctx().is_home_of(&user) {
            return Some(Ok(match self.reg.ctx().store.user(&user, WorkerCtx::now()) {
                Ok(u) => {
                    self.conn.attach(u);
                    self.conn.step(WorkerCtx::now(), &mut self.out)
                }
                Err(e) => {
                    tracing::error!(user, error = %e, "cannot open the user's mail store");
                    self.conn.store_unavailable(&mut self.out);
                    Step::Close
                }
            }));
        }
        self.flush().await.ok()?;
        // The move duplicates the descriptor for a moment. Near the
        // open-files limit a login storm can have many moves in flight, so
        // running out is usually over within milliseconds: retry briefly.
        for _ in 0..50 {
            match detach(&self.stream) {
                Ok(s) => return Some(Err((self.reg.ctx().server.home(&user), s))),
                Err(e) if matches!(rustix::io::Errno::from_io_error(&e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => {
                    monoio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(_) => break,
            }
        }
        tracing::warn!(user, "cannot move the connection to its worker: out of descriptors");
        self.conn.busy(&mut self.out);
        Some(Ok(Step::Close))
    }

    /// STARTTLS after the tagged OK went out: forget what the client
    /// pipelined behind the command, then handshake. None: the connection
    /// is over (handshake failed or timed out).
    async fn start_tls(&mut self) -> Option<()> {
        self.conn.discard_input();
        let mut buf = self.conn.decoder().take_buffer();
        let config = self.reg.ctx().server.certs.current().imap.clone();
        let t = handshake::accept(&mut self.stream, config, self.reg.ctx().server.config.tls.handshake_timeout, &mut buf, self.guard.ip()).await;
        self.conn.decoder().restore_buffer(buf);
        self.tls = Some(t?);
        Some(())
    }

    /// Every step but waiting.
    async fn run(&mut self, step: Step) -> Option<Step> {
        Some(match step {
            Step::Flush => {
                self.flush().await.ok()?;
                // A command runs in slices: let the other connections of
                // this worker run between them.
                crate::signal::yield_now().await;
                self.conn.step(WorkerCtx::now(), &mut self.out)
            }
            Step::Authenticate { user, password } => self.authenticate(user, password).await,
            Step::AwaitDurable => {
                if let Some(ticket) = self.conn.durable_ticket() {
                    let _ = ticket.await;
                }
                self.conn.durable_done(&mut self.out);
                self.conn.step(WorkerCtx::now(), &mut self.out)
            }
            Step::StartTls => {
                self.flush().await.ok()?;
                self.start_tls().await?;
                self.conn.tls_started();
                self.conn.step(WorkerCtx::now(), &mut self.out)
            }
            Step::Compress => {
                self.flush().await.ok()?;
                self.zip = Some(Compression::new());
                self.conn.compression_started();
                self.conn.step(WorkerCtx::now(), &mut self.out)
            }
            Step::Close => {
                let _ = self.flush().await;
                if let Some(t) = self.tls.as_mut() {
                    tls::close(&mut self.stream, t).await;
                }
                guard::linger_close(&mut self.stream).await;
                return None;
            }
            Step::Read | Step::Idle | Step::LoggedIn(_) => unreachable!("handled by serve"),
        })
    }
}

/// Implicit TLS (IMAPS, RFC 8314): the handshake first, bounded in time,
/// then the greeting. The connection counts toward the limits throughout.
pub async fn accept_tls(ctx: Rc<WorkerCtx>, mut stream: TcpStream, guard: ConnGuard, mut conn: Connection) {
    let mut early = Vec::new();
    let config = ctx.server.certs.current().imap.clone();
    match handshake::accept(&mut stream, config, ctx.server.config.tls.handshake_timeout, &mut early, guard.ip()).await {
        Some(t) => {
            conn.decoder().feed(&early);
            spawn(&ctx, stream, Some(t), guard, conn, true);
        }
        None => {
            let _ = stream.shutdown().await;
        }
    }
}

/// Starts serving a connection on this worker.
pub fn spawn(ctx: &Rc<WorkerCtx>, stream: TcpStream, tls: Option<Box<rustls::ServerConnection>>, guard: ConnGuard, mut conn: Connection, greet: bool) {
    let signal = Signal::new();
    conn.set_signal(signal.clone());
    let reg = ctx.register_connection(&signal);
    let mut c = Box::new(Conn { stream, tls, zip: None, conn, out: Out::new(), reg, signal, guard, counted: Gauged(None), input_at: Instant::now() });
    if greet {
        c.out_buffer();
        c.conn.greeting(&mut c.out);
    }
    // The task gets only the box: an async fn keeps its arguments in its
    // state for its whole life, so they must be small.
    guard::spawn("imap connection", serve(c));
}

/// Serves one connection until it ends or moves to another worker.
async fn serve(mut c: Box<Conn>) {
    let ctx = c.reg.ctx().clone();
    let mut step = match c.conn.user().map(str::to_string) {
        // Resumed here, or preauthenticated: place it on the user's worker.
        Some(user) => Step::LoggedIn(user),
        None => Step::Read,
    };
    let mut moved = None;
    'conn: loop {
        step = match step {
            Step::Read | Step::Idle => {
                let idle = step == Step::Idle;
                if !Box::pin(c.prepare(idle)).await {
                    break;
                }
                loop {
                    // Inflated input may be waiting that no readiness announces.
                    let woke = match c.zip.as_ref().is_some_and(|z| z.has_input()) {
                        true => Ok(Woke::Input),
                        false => wait(&c.stream, &c.signal).await,
                    };
                    match Box::pin(c.after_wake(woke, idle)).await {
                        Next::Wait => continue,
                        Next::Step(s) => break s,
                        Next::End => break 'conn,
                    }
                }
            }
            Step::LoggedIn(user) => match Box::pin(c.logged_in(user)).await {
                Some(Ok(s)) => s,
                Some(Err(target)) => {
                    moved = Some(target);
                    break;
                }
                None => break,
            },
            other => match Box::pin(c.run(other)).await {
                Some(s) => s,
                None => break,
            },
        };
    }
    c.count_as(None);
    c.release();
    if let Some((home, std_stream)) = moved {
        let Conn { mut conn, guard, tls, .. } = *c;
        // The snapshot carries any input already read past the login.
        if let Some(snapshot) = conn.snapshot() {
            let m = Migrant { stream: std_stream, tls, guard, snapshot };
            if !ctx.server.send(home, WorkerMsg::Adopt(Box::new(m))) {
                tracing::warn!("target worker is gone; connection dropped");
            }
        }
    }
}
