//! The control socket (`<data dir>/control.sock`) and, on a backend of a
//! cluster, the control port (`control =` in the cluster map).
//!
//! `ringmail import` hands its operations to a running server on the
//! socket, and each runs on the worker that owns the user, like a
//! delivery, so the store keeps one writer and sessions in IDLE hear of
//! imported mail at once. `ringmail user move` talks to the control ports
//! of the backends a user moves between (`relocate.rs`); the port first
//! asks for the cluster's secret (`cluster::control_auth`). The framing is
//! `migrate::wire`.
//!
//! Blocking threads (one to accept, one per connection): imports and moves
//! are rare, long batch jobs, and the workers only ever see finished
//! requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::context::{ControlJob, ServerCtx, WorkerCtx};
use crate::cluster::control_auth as auth;
use crate::migrate::wire::{self, Answer, Request};
use crate::migrate::{apply, Op, Reply};

/// Largest batch of message bytes one request may carry.
const MAX_BATCH: u64 = 1 << 30;

/// How long a control port's client has to prove it knows the secret.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the socket (replacing one a previous run left: the caller holds
/// the data directory's lock) and serves it on a thread of its own.
pub fn serve(data_dir: &Path, ctx: Arc<ServerCtx>) -> Result<PathBuf, String> {
    let path = data_dir.join(wire::SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::thread::Builder::new()
        .name("ringmail-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let ctx = ctx.clone();
                let _ = std::thread::Builder::new().name("ringmail-import".into()).spawn(move || serve_connection(stream, &ctx));
            }
        })
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    Ok(path)
}

/// Binds a backend's control port and serves it on a thread of its own;
/// every connection must first prove it knows `secret`.
pub fn serve_port(addr: SocketAddr, secret: Vec<u8>, ctx: Arc<ServerCtx>) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on the control port {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let secret = Arc::new(secret);
    std::thread::Builder::new()
        .name("ringmail-control-port".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (ctx, secret) = (ctx.clone(), secret.clone());
                let _ = std::thread::Builder::new().name("ringmail-move".into()).spawn(move || {
                    let peer = stream.peer_addr().ok();
                    match handshake(&mut stream, &secret) {
                        Ok(()) => {
                            let _ = stream.set_read_timeout(None);
                            serve_connection(stream, &ctx);
                        }
                        Err(e) => tracing::warn!(peer = ?peer, error = %e, "control port: a client without the cluster secret"),
                    }
                });
            }
        })
        .map_err(|e| format!("cannot start the control port thread: {e}"))?;
    Ok(bound)
}

/// The server's side of `cluster::control_auth`'s handshake.
fn handshake(stream: &mut std::net::TcpStream, secret: &[u8]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mine = auth::challenge();
    stream.write_all(&mine)?;
    let mut hello = [0u8; auth::PROOF + auth::CHALLENGE];
    stream.read_exact(&mut hello)?;
    let (proof, theirs) = hello.split_at(auth::PROOF);
    if !auth::client_is_genuine(secret, &mine, proof) {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "wrong proof of the secret"));
    }
    stream.write_all(&auth::server_proof(secret, theirs))
}

fn serve_connection<S: Read + Write>(mut stream: S, ctx: &ServerCtx) {
    loop {
        let (request, data) = match wire::read_request(&mut stream, MAX_BATCH) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = wire::write_reply(&mut stream, &Err(format!("bad request: {e}")), &[]);
                return;
            }
        };
        let (reply, out) = match request {
            Request::Move(op) => match super::relocate::serve(op, data, ctx) {
                Ok((r, out)) => (Ok(Answer::Move(r)), out),
                Err(e) => (Err(e), Vec::new()),
            },
            Request::Import(op) => {
                let user = op.user().to_string();
                (ctx.on_worker(&user, Request::Import(op), data), Vec::new())
            }
        };
        if wire::write_reply(&mut stream, &reply, &out).is_err() {
            return;
        }
    }
}

/// A batch of messages is stored in slices of about this many bytes, the
/// worker turning to its sessions between slices: each slice (its writes,
/// MIME analysis and checksums) holds the worker for a few milliseconds.
const SLICE_BYTES: usize = 1 << 20;

/// Runs a job on the user's worker and answers it.
pub async fn run_job(ctx: Rc<WorkerCtx>, job: Box<ControlJob>) {
    let ControlJob { request, data, reply } = *job;
    let r = match request {
        Request::Import(op) => import(&ctx, op, data).await.map(Answer::Import),
        Request::Move(op) => super::relocate::on_worker(&ctx, op).await.map(Answer::Move),
    };
    let _ = reply.send(r);
}

/// An import's operation: apply, await durability, answer.
async fn import(ctx: &Rc<WorkerCtx>, op: Op, data: Vec<Vec<u8>>) -> Result<Reply, String> {
    let mut tickets = Vec::new();
    let answer = match op {
        Op::Append { user, mailbox, msgs } if msgs.len() == data.len() => {
            let mut uids = Vec::with_capacity(msgs.len());
            let mut rest = msgs.into_iter().zip(data).peekable();
            while rest.peek().is_some() {
                let (mut slice, mut bytes, mut bodies) = (Vec::new(), 0, Vec::new());
                while let Some((m, d)) = rest.next_if(|_| bytes < SLICE_BYTES) {
                    bytes += d.len();
                    slice.push(m);
                    bodies.push(d);
                }
                let op = Op::Append { user: user.clone(), mailbox: mailbox.clone(), msgs: slice };
                let applied = apply::execute(&ctx.store, op, bodies, WorkerCtx::now())?;
                tickets.extend(applied.tickets);
                if let Reply::Appended(u) = applied.reply {
                    uids.extend(u);
                }
                crate::signal::yield_now().await;
            }
            Reply::Appended(uids)
        }
        op => {
            let applied = apply::execute(&ctx.store, op, data, WorkerCtx::now())?;
            tickets = applied.tickets;
            applied.reply
        }
    };
    for t in tickets {
        t.await.map_err(|e| format!("cannot make the import durable: {e}"))?;
    }
    Ok(answer)
}
