//! The control socket (`<data dir>/control.sock`): `ringmail import` hands
//! its operations to a running server here, and each runs on the worker
//! that owns the user, like a delivery, so the store keeps one writer and
//! sessions in IDLE hear of imported mail at once. The framing is
//! `migrate::wire`; the operations are `migrate::apply`'s.
//!
//! Blocking threads (one to accept, one per connection): imports are rare,
//! long batch jobs, and the workers only ever see finished requests.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use super::context::{MigrateJob, ServerCtx, WorkerCtx, WorkerMsg};
use crate::migrate::{apply, wire, Op, Reply};

/// Largest batch of message bytes one request may carry.
const MAX_BATCH: u64 = 1 << 30;

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

fn serve_connection(mut stream: UnixStream, ctx: &ServerCtx) {
    loop {
        let (op, data) = match wire::read_request(&mut stream, MAX_BATCH) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = wire::write_reply(&mut stream, &Err(format!("bad request: {e}")));
                return;
            }
        };
        let home = ctx.home(op.user());
        let (tx, rx) = flume::bounded(1);
        let reply = if ctx.send(home, WorkerMsg::Migrate(Box::new(MigrateJob { op, data, reply: tx }))) {
            rx.recv().unwrap_or_else(|_| Err("the server is shutting down".into()))
        } else {
            Err("the server is shutting down".into())
        };
        if wire::write_reply(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// A batch of messages is stored in slices of about this many bytes, the
/// worker turning to its sessions between slices: each slice (its writes,
/// MIME analysis and checksums) holds the worker for a few milliseconds.
const SLICE_BYTES: usize = 1 << 20;

/// Runs a job on the user's worker: apply, await durability, answer.
pub async fn run_job(ctx: Rc<WorkerCtx>, job: Box<MigrateJob>) {
    let MigrateJob { op, data, reply } = *job;
    let r: Result<Reply, String> = async {
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
    .await;
    let _ = reply.send(r);
}
