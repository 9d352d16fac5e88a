//! The I/O side of one POP3 connection: feeds bytes to the sans-io
//! [`Session`], writes what it produces (message bodies straight from their
//! mappings), and carries out its [`Step`]s: password checks, moving to the
//! user's worker, the user's POP3 lock and maildrop, TLS, QUIT's commit.
//! Timeouts and shutdown use the worker's deadline sweeper.

use std::rc::Rc;
use std::time::Instant;

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use super::context::{detach, Pop3Migrant, Registration, WorkerCtx, WorkerMsg};
use super::guard;
use super::handshake;
use crate::auth::limiter::ConnGuard;
use crate::metrics;
use crate::pop3::{Facts, Maildrop, OpenError, Session, Step};
use crate::proto::Out;
use crate::signal::Signal;
use ringmail_kit::tls::{self, Input};

/// Read size: commands are short lines.
const READ_CHUNK: usize = 4 << 10;

/// Says why a connection is turned away at the door (limits).
pub async fn refuse(mut stream: TcpStream, why: &'static str) {
    use monoio::io::AsyncWriteRentExt;
    let _ = stream.write_all(format!("-ERR [SYS/TEMP] {why}\r\n").into_bytes()).await;
    guard::linger_close(&mut stream).await;
}

/// Implicit TLS (POP3S, RFC 8314): the handshake, then the greeting.
pub async fn accept_tls(ctx: Rc<WorkerCtx>, mut stream: TcpStream, guard: ConnGuard) {
    let mut early = Vec::new();
    let config = ctx.server.certs.current().pop3.clone();
    match handshake::accept(&mut stream, config, ctx.server.config.tls.handshake_timeout, &mut early, guard.ip()).await {
        Some(t) => {
            let mut s = Session::new(Facts { tls: true, cleartext_ok: true, can_stls: false });
            s.feed(&early);
            spawn(&ctx, stream, Some(t), guard, s, true);
        }
        None => {
            let _ = monoio::io::AsyncWriteRent::shutdown(&mut stream).await;
        }
    }
}

/// Serves a connection on this worker; `greet` for a new one.
pub fn spawn(ctx: &Rc<WorkerCtx>, stream: TcpStream, tls: Option<Box<rustls::ServerConnection>>, guard: ConnGuard, session: Session, greet: bool) {
    guard::spawn("pop3 connection", serve(ctx.clone(), stream, tls, guard, session, greet));
}

/// The user's POP3 lock on their worker, released when dropped.
struct Lock {
    ctx: Rc<WorkerCtx>,
    user: String,
}

impl Lock {
    fn take(ctx: &Rc<WorkerCtx>, user: &str) -> Option<Lock> {
        ctx.pop3_locks.borrow_mut().insert(user.to_string()).then(|| Lock { ctx: ctx.clone(), user: user.to_string() })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.ctx.pop3_locks.borrow_mut().remove(&self.user);
    }
}

struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    out: Out,
    reg: Registration,
    signal: Rc<Signal>,
    guard: ConnGuard,
    lock: Option<Lock>,
}

impl Conn {
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let len = self.out.len() as u64;
        metrics::with_worker(|m| m.bytes_out.fetch_add(len, std::sync::atomic::Ordering::Relaxed));
        super::iovec::send(&mut self.stream, self.tls.as_deref_mut(), &mut self.out).await
    }
}

async fn serve(ctx: Rc<WorkerCtx>, stream: TcpStream, tls: Option<Box<rustls::ServerConnection>>, guard: ConnGuard, mut s: Session, greet: bool) {
    let signal = Signal::new();
    let reg = ctx.register_connection(&signal);
    metrics::with_worker(|m| m.pop3_conn(1));
    let _gauge = Pop3Gauge;
    let mut c = Conn { stream, tls, out: Out::new(), reg, signal, guard, lock: None };
    if greet {
        s.greeting(&mut c.out);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut step = s.step(&mut c.out);
    loop {
        if matches!(step, Step::Close) {
            // Free before the last answer goes out: a client that reconnects
            // at once after QUIT's +OK finds its maildrop unlocked.
            c.lock = None;
        }
        if c.flush().await.is_err() {
            break;
        }
        step = match step {
            Step::Close => break,
            Step::Flush => {
                crate::signal::yield_now().await;
                s.step(&mut c.out)
            }
            Step::StartTls => {
                s.forget_input();
                let mut early = Vec::new();
                let config = ctx.server.certs.current().pop3.clone();
                let Some(t) = handshake::accept(&mut c.stream, config, ctx.server.config.tls.handshake_timeout, &mut early, c.guard.ip()).await else { break };
                c.tls = Some(t);
                s.tls_started();
                s.feed(&early);
                s.step(&mut c.out)
            }
            Step::Authenticate { user, password } => {
                let r = super::login::check(&ctx, c.guard.ip(), &user, &password).await;
                s.auth_done(r, &mut c.out)
            }
            Step::Open(user) => {
                if !ctx.is_home_of(&user) {
                    // The user's mail lives on another worker: the
                    // connection moves there, with what it has read.
                    match detach(&c.stream) {
                        Ok(std_stream) => {
                            let Some(snapshot) = s.snapshot() else { break };
                            let Conn { tls, guard, .. } = c;
                            let m = Pop3Migrant { stream: std_stream, tls, guard, snapshot };
                            if !ctx.server.send(ctx.server.home(&user), WorkerMsg::AdoptPop3(Box::new(m))) {
                                tracing::warn!("target worker is gone; connection dropped");
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(user, error = %e, "cannot move the POP3 connection to its worker");
                            s.opened(Err(OpenError::Unavailable), &mut c.out)
                        }
                    }
                } else {
                    let r = match Lock::take(&ctx, &user) {
                        None => Err(OpenError::InUse),
                        Some(lock) => match ctx.store.user(&user, WorkerCtx::now()).map_err(|e| e.to_string()).and_then(Maildrop::open) {
                            Ok(m) => {
                                c.lock = Some(lock);
                                Ok(m)
                            }
                            Err(e) => {
                                tracing::warn!(user, error = %e, "cannot open the POP3 maildrop");
                                Err(OpenError::Unavailable)
                            }
                        },
                    };
                    s.opened(r, &mut c.out)
                }
            }
            Step::AwaitDurable(t) => {
                let r = t.await;
                s.quit_done(r, &mut c.out)
            }
            Step::Read => {
                let limits = &ctx.server.config.limits;
                let idle = if s.is_authenticated() { ctx.server.config.pop3.idle_timeout } else { limits.login_timeout };
                c.reg.arm(Instant::now() + idle);
                let readable = monoio::select! {
                    r = c.stream.readable(false) => r.is_ok(),
                    _ = c.signal.wait() => false,
                };
                if !readable {
                    if ctx.stopping.get() {
                        s.shutdown(&mut c.out);
                    } else if c.reg.take_expired() {
                        s.timed_out(&mut c.out);
                    } else if s.user().is_some_and(|u| ctx.store.is_held(u)) {
                        s.moving(&mut c.out);
                    } else {
                        step = Step::Read;
                        continue;
                    }
                    let _ = c.flush().await;
                    break;
                }
                if buf.capacity() == 0 {
                    buf = Vec::with_capacity(READ_CHUNK);
                }
                buf.clear();
                if let Some(t) = c.tls.as_mut() {
                    match tls::read(&mut c.stream, t, &mut buf).await {
                        Ok(Input::Data) => s.feed(&buf),
                        Ok(Input::Nothing) => {}
                        Ok(Input::Eof) | Err(_) => break,
                    }
                } else {
                    let (r, b) = c.stream.read(buf).await;
                    buf = b;
                    match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.feed(&buf[..n]),
                    }
                }
                // Between commands: no read buffer is held.
                buf = Vec::new();
                s.step(&mut c.out)
            }
        };
    }
    let _ = c.flush().await;
    if let Some(t) = c.tls.as_mut() {
        tls::close(&mut c.stream, t).await;
    }
    guard::linger_close(&mut c.stream).await;
}

/// Counts a POP3 connection in the metrics until dropped.
struct Pop3Gauge;

impl Drop for Pop3Gauge {
    fn drop(&mut self) {
        metrics::with_worker(|m| m.pop3_conn(-1));
    }
}
