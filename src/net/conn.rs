//! The I/O side of one IMAP connection: feeds bytes to the sans-io
//! [`Connection`], writes what it produces, and carries out its [`Step`]s:
//! password checks off the event loop, moving to the user's worker, waiting
//! for group commit, waiting in IDLE. It never interprets a command.
//!
//! While a connection waits for input it holds no buffer: it waits for
//! readiness first and only then borrows a buffer from the worker's pool.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::iovec::OutVec;
use super::pool::Pool;
use super::worker::{detach, Migrant, WorkerCtx, WorkerMsg};
use crate::auth::limiter::ConnGuard;
use crate::auth::AuthResult;
use crate::proto::Out;
use crate::session::{Connection, Step};
use crate::signal::Signal;

/// Says BYE to a connection refused at the door (limits).
pub async fn refuse(mut stream: TcpStream, why: &'static str) {
    let msg = format!("* BYE {why}\r\n").into_bytes();
    let _ = stream.write_all(msg).await;
    let _ = stream.shutdown().await;
}

/// Writes everything in `out`, from its buffer and shared mappings.
async fn flush(stream: &mut TcpStream, out: &mut Out, pool: &Pool) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    if out.splices.is_empty() {
        let buf = std::mem::take(&mut out.buf);
        let (r, buf) = stream.write_all(buf).await;
        out.buf = buf;
        out.buf.clear();
        r?;
    } else {
        let mut v = OutVec::new(std::mem::take(out));
        while v.remaining() > 0 {
            let (r, back) = stream.writev(v).await;
            v = back;
            match r {
                Ok(0) => {
                    *out = v.into_out();
                    out.clear();
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                Ok(n) => v.advance(n),
                Err(e) => {
                    *out = v.into_out();
                    out.clear();
                    return Err(e);
                }
            }
        }
        *out = v.into_out();
        out.clear();
    }
    let _ = pool;
    Ok(())
}

enum Woke {
    Input,
    Signal,
    Timer,
}

/// Waits for input without holding a buffer, or for the signal, or the deadline.
async fn wait(stream: &TcpStream, signal: &Signal, deadline: Instant) -> std::io::Result<Woke> {
    let deadline = monoio::time::Instant::from_std(deadline);
    monoio::select! {
        // Not relaxed: with epoll, readiness cached from an earlier read may be
        // stale; the precise check clears it instead of waking at once (with
        // io_uring this is a PollAdd either way).
        r = stream.readable(false) => r.map(|_| Woke::Input),
        _ = signal.wait() => Ok(Woke::Signal),
        _ = monoio::time::sleep_until(deadline) => Ok(Woke::Timer),
    }
}

/// Reads what is available into the decoder, using a pooled buffer.
async fn read(stream: &mut TcpStream, conn: &mut Connection, pool: &Pool) -> std::io::Result<usize> {
    let mut buf = conn.decoder().take_buffer();
    if buf.capacity() == 0 {
        buf = pool.get();
    }
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(super::pool::BUF_SIZE);
    }
    let len = buf.len();
    let (r, slice) = stream.read(monoio::buf::IoBufMut::slice_mut(buf, len..)).await;
    conn.decoder().restore_buffer(slice.into_inner());
    r
}

/// Returns the connection's buffers to the pool while it waits.
fn release(conn: &mut Connection, out: &mut Out, pool: &Pool) {
    if conn.decoder().is_empty() {
        pool.put(conn.decoder().take_buffer());
    }
    pool.put(std::mem::take(&mut out.buf));
}

/// Serves one connection until it ends or moves to another worker.
pub async fn serve(ctx: Rc<WorkerCtx>, mut stream: TcpStream, peer: SocketAddr, guard: ConnGuard, mut conn: Connection, greet: bool) {
    ctx.connections.set(ctx.connections.get() + 1);
    let signal = Signal::new();
    conn.set_signal(signal.clone());
    let registration = ctx.register(&signal);
    let mut out = Out::new();
    if greet {
        conn.greeting(&mut out);
    }
    let mut step = match conn.user().map(str::to_string) {
        // Resumed here, or preauthenticated: place it on the user's worker.
        Some(user) => Step::LoggedIn(user),
        None => Step::Read,
    };
    let mut moved = None;
    loop {
        step = match step {
            Step::Read | Step::Flush | Step::Idle => {
                let idle = step == Step::Idle;
                if flush(&mut stream, &mut out, &ctx.pool).await.is_err() {
                    break;
                }
                if step == Step::Flush {
                    conn.step(WorkerCtx::now(), &mut out)
                } else {
                    match input(&ctx, &mut stream, &mut conn, &signal, &mut out, idle).await {
                        Some(s) => s,
                        None => break,
                    }
                }
            }
            Step::Authenticate { user, password } => {
                let result = verify(&ctx, user, password).await;
                if result == AuthResult::Failed {
                    let delay = ctx.shared.failures.failed(peer.ip(), Instant::now());
                    monoio::time::sleep(delay).await;
                }
                conn.auth_done(result, &mut out)
            }
            Step::LoggedIn(user) => {
                let home = super::shard(&user, ctx.shared.workers());
                if home == ctx.id {
                    match ctx.store.user(&user, WorkerCtx::now()) {
                        Ok(u) => {
                            conn.attach(u);
                            conn.step(WorkerCtx::now(), &mut out)
                        }
                        Err(e) => {
                            tracing::error!(user, error = %e, "cannot open the user's mail store");
                            out.untagged_status("BYE", Some("UNAVAILABLE"), "Mail store unavailable");
                            Step::Close
                        }
                    }
                } else {
                    // Everything of this user lives on `home`: move there.
                    if flush(&mut stream, &mut out, &ctx.pool).await.is_err() {
                        break;
                    }
                    match (conn.snapshot(), detach(&stream)) {
                        (Some(snapshot), Ok(std_stream)) => {
                            moved = Some((home, std_stream, snapshot));
                            break;
                        }
                        _ => {
                            out.untagged_status("BYE", Some("UNAVAILABLE"), "Internal error");
                            Step::Close
                        }
                    }
                }
            }
            Step::AwaitDurable => {
                let r = match conn.durable_target() {
                    Some(mb) => ctx.committer.commit(mb).await,
                    None => Ok(()),
                };
                conn.durable_done(r, &mut out);
                conn.step(WorkerCtx::now(), &mut out)
            }
            Step::StartTls => {
                // TLS is not configured on this listener; the session never offers it.
                out.untagged_status("BYE", None, "TLS unavailable");
                Step::Close
            }
            Step::Close => {
                let _ = flush(&mut stream, &mut out, &ctx.pool).await;
                let _ = stream.shutdown().await;
                break;
            }
        };
    }
    drop(registration);
    ctx.connections.set(ctx.connections.get() - 1);
    release(&mut conn, &mut out, &ctx.pool);
    if let Some((home, std_stream, snapshot)) = moved {
        drop(stream);
        let m = Migrant { stream: std_stream, peer, guard, snapshot };
        if ctx.shared.inboxes[home].send(WorkerMsg::Adopt(Box::new(m))).is_err() {
            tracing::warn!("target worker is gone; connection dropped");
        }
    }
}

/// Waits for and reads input, honouring timeouts, IDLE notifications and
/// shutdown. Returns the next step, or None when the connection is over.
async fn input(ctx: &Rc<WorkerCtx>, stream: &mut TcpStream, conn: &mut Connection, signal: &Signal, out: &mut Out, idle: bool) -> Option<Step> {
    let limits = &ctx.shared.config.limits;
    let started = Instant::now();
    loop {
        if ctx.stopping.get() {
            conn.shutdown(out);
            return Some(Step::Close);
        }
        let deadline = if idle {
            started + limits.idle_keepalive
        } else if conn.is_authenticated() {
            started + limits.idle_timeout
        } else {
            started + limits.login_timeout
        };
        if conn.is_quiet() {
            release(conn, out, &ctx.pool);
        }
        let woke = if conn.decoder().is_empty() {
            match wait(stream, signal, deadline).await {
                Ok(w) => w,
                Err(_) => return None,
            }
        } else {
            // A partial command is pending: read directly, still bounded in time.
            Woke::Input
        };
        match woke {
            Woke::Input => {
                let r = if conn.decoder().is_empty() {
                    read(stream, conn, &ctx.pool).await
                } else {
                    let d = monoio::time::Instant::from_std(deadline);
                    match monoio::time::timeout_at(d, read(stream, conn, &ctx.pool)).await {
                        Ok(r) => r,
                        Err(_) => {
                            conn.timed_out(out);
                            return Some(Step::Close);
                        }
                    }
                };
                match r {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => return Some(conn.step(WorkerCtx::now(), out)),
                }
            }
            Woke::Signal => {
                if ctx.stopping.get() {
                    continue;
                }
                if idle {
                    conn.notify(out);
                    if !out.is_empty() && flush(stream, out, &ctx.pool).await.is_err() {
                        return None;
                    }
                }
            }
            Woke::Timer => {
                if idle {
                    conn.keepalive(out);
                    if flush(stream, out, &ctx.pool).await.is_err() {
                        return None;
                    }
                    return Some(Step::Idle);
                }
                conn.timed_out(out);
                return Some(Step::Close);
            }
        }
    }
}

/// Checks a password: from the cache of verified credentials, or with the
/// slow hash on the blocking pool so the worker keeps serving.
async fn verify(ctx: &Rc<WorkerCtx>, user: String, password: Vec<u8>) -> AuthResult {
    let auth = ctx.shared.auth.clone();
    match auth.check_cached(&user, &password) {
        (Some(true), _) => AuthResult::Ok(crate::auth::passwd::normalize_user_name(&user)),
        (_, None) => AuthResult::Failed,
        (_, Some(stored)) => monoio::spawn_blocking(move || auth.verify_slow(&user, &password, &stored)).await.unwrap_or(AuthResult::Unavailable),
    }
}
