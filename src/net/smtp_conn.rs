//! The I/O side of an LMTP or SMTP connection: feeds bytes to the sans-io
//! engine in `delivery::smtp`, writes its replies, and stores what it
//! delivers (see `deliver`). Timeouts and shutdown use the worker's
//! deadline sweeper, as IMAP connections do.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::context::WorkerCtx;
use super::deliver::{deliver_all, Copy};
use super::guard;
use super::handshake;
use super::spool::Spool;
use crate::auth::limiter::ConnGuard;
use crate::delivery::smtp::{Dialect, Session, Step};
use crate::metrics;
use crate::signal::Signal;
use ringmail_kit::tls::{self, Input};
use std::sync::atomic::Ordering::Relaxed;

/// Read size: messages are mostly larger than a few KiB.
const READ_CHUNK: usize = 64 << 10;

pub fn spawn(ctx: &Rc<WorkerCtx>, stream: TcpStream, guard: ConnGuard, dialect: Dialect) {
    guard::spawn("lmtp/smtp connection", serve(ctx.clone(), stream, guard, dialect));
}

async fn serve(ctx: Rc<WorkerCtx>, mut stream: TcpStream, guard: ConnGuard, dialect: Dialect) {
    let server = ctx.server.clone();
    let mut s = Session::new(dialect, &server.directory.hostname, server.smtp_limits);
    s.set_peer(&guard.ip().to_string());
    s.offer_tls();
    let mut tls: Option<Box<rustls::ServerConnection>> = None;
    let signal = Signal::new();
    let reg = ctx.register_connection(&signal);
    metrics::with_worker(|m| m.delivery_conn(1));
    let _gauge = DeliveryGauge;
    let mut out = Vec::with_capacity(512);
    s.greeting(&mut out);
    let mut buf: Vec<u8> = Vec::new();
    // The message being received: its data leaves the engine after every step.
    let mut spool: Option<Spool> = None;
    let mut spool_failed = false;
    loop {
        let step = s.step(&*server.directory, &mut out);
        if !s.pending_data().is_empty() {
            let sp = spool.get_or_insert_with(|| Spool::new(&server.spool_dir, server.spool_budget.clone()));
            if let Err(e) = sp.write(s.pending_data()) {
                if !spool_failed {
                    tracing::error!(error = %e, "cannot spool message data");
                }
                spool_failed = true;
            }
            s.clear_data();
        }
        if !s.in_data() && !matches!(step, Step::Deliver(_)) {
            // Refused (too large) or never started: nothing to keep.
            spool = None;
            spool_failed = false;
        }
        if !out.is_empty() && send(&mut stream, tls.as_deref_mut(), &mut out).await.is_err() {
            break;
        }
        match step {
            Step::Close => break,
            Step::StartTls => {
                let mut early = Vec::new();
                let config = server.certs.current().smtp.clone();
                let Some(t) = handshake::accept(&mut stream, config, server.config.tls.handshake_timeout, &mut early, guard.ip()).await else { break };
                s.tls_started();
                s.feed(&early);
                tls = Some(t);
            }
            Step::Deliver(env) => {
                let now = crate::delivery::rfc5322_date(WorkerCtx::now());
                let copies = env
                    .recipients
                    .iter()
                    .map(|r| Copy {
                        user: r.user.clone(),
                        mailbox: r.mailbox.clone(),
                        prefix: env.prefix(r, s.trace(r, &now).as_deref()),
                        from: env.from.clone(),
                        address: r.address.clone(),
                        hop: r.hop,
                    })
                    .collect();
                let body = match spool.take().map(|sp| sp.finish()) {
                    _ if std::mem::take(&mut spool_failed) => None,
                    Some(Ok(b)) => Some(b),
                    None => Spool::new(&server.spool_dir, server.spool_budget.clone()).finish().ok(),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot map spooled message");
                        None
                    }
                };
                let results = match body {
                    Some(b) => deliver_all(&ctx, copies, &Arc::new(b)).await,
                    None => env.recipients.iter().map(|_| Err(crate::delivery::smtp::DeliveryError::Full)).collect(),
                };
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                metrics::with_worker(|m| {
                    m.deliveries_ok.fetch_add(ok, Relaxed);
                    m.deliveries_failed.fetch_add(results.len() as u64 - ok, Relaxed);
                });
                s.delivered(&results, &mut out);
            }
            Step::Read => {
                if s.is_idle() {
                    // Between messages: do not hold the read buffer.
                    buf = Vec::new();
                }
                // A stalled DATA holds at most the spool's memory share.
                reg.arm(Instant::now() + server.config.delivery.timeout);
                let readable = monoio::select! {
                    r = stream.readable(false) => r.is_ok(),
                    _ = signal.wait() => false,
                };
                if !readable {
                    if ctx.stopping.get() {
                        s.shutting_down(&mut out);
                    } else if reg.take_expired() {
                        s.timed_out(&mut out);
                    } else {
                        continue;
                    }
                    let _ = send(&mut stream, tls.as_deref_mut(), &mut out).await;
                    break;
                }
                if buf.capacity() == 0 {
                    buf = Vec::with_capacity(READ_CHUNK);
                }
                buf.clear();
                if let Some(t) = tls.as_mut() {
                    match tls::read(&mut stream, t, &mut buf).await {
                        Ok(Input::Data) => s.feed(&buf),
                        Ok(Input::Nothing) => {}
                        Ok(Input::Eof) | Err(_) => break,
                    }
                    continue;
                }
                let (r, b) = stream.read(buf).await;
                buf = b;
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => s.feed(&buf[..n]),
                }
            }
        }
    }
    if let Some(t) = tls.as_mut() {
        tls::close(&mut stream, t).await;
    }
    guard::linger_close(&mut stream).await;
    drop(guard);
}

/// Counts an LMTP/SMTP connection in the metrics until dropped.
struct DeliveryGauge;

impl Drop for DeliveryGauge {
    fn drop(&mut self) {
        metrics::with_worker(|m| m.delivery_conn(-1));
    }
}

/// Sends the replies in `out` (encrypted once TLS is on) and clears it.
async fn send(stream: &mut TcpStream, tls: Option<&mut rustls::ServerConnection>, out: &mut Vec<u8>) -> std::io::Result<()> {
    let r = match tls {
        Some(t) => tls::write_parts(stream, t, std::iter::once(&out[..])).await,
        None => {
            let (r, back) = stream.write_all(std::mem::take(out)).await;
            *out = back;
            r.map(|_| ())
        }
    };
    out.clear();
    r
}

/// Turns away a connection over the limits (RFC 5321 3.1: 421 greeting).
pub async fn refuse(mut stream: TcpStream, why: &'static str) {
    let _ = stream.write_all(crate::delivery::smtp::refusal(why)).await;
    guard::linger_close(&mut stream).await;
}
