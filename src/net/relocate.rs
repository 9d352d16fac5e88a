//! A backend's side of `ringmail user move` (the mover is
//! `migrate::mover`): files listed, read and staged on the control port's
//! thread; the hold, its release and the discarding of a store on the
//! worker that owns the user, since they touch its open store and
//! sessions; the commit of a move in the cluster's table of moves.
//!
//! A hold is a lease: if the mover goes away, the user is served again
//! when it ends. Only a commit under a live hold ends the user's life on
//! this backend, so a move dies cleanly at any point before it, and after
//! it the backends learn the move from each other (`cluster.rs`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::context::{Hold, ServerCtx, WorkerCtx};
use crate::migrate::relocate::{MoveOp, MoveReply, PIECE};
use crate::migrate::userfiles;
use crate::migrate::wire::{Answer, Request};

/// How long a hold may wait for the user's last commits to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a move's operation: files here, the rest on the user's worker.
pub fn serve(op: MoveOp, data: Vec<Vec<u8>>, ctx: &ServerCtx) -> Result<(MoveReply, Vec<Vec<u8>>), String> {
    let cluster = ctx.cluster.as_ref().ok_or("this server is not a backend of a cluster")?;
    let data_dir = &ctx.config.data_dir;
    let io = |e: std::io::Error| e.to_string();
    let done = |r| Ok((r, Vec::new()));
    match op {
        MoveOp::Where { user } => done(MoveReply::Home(cluster.view().map.home(&user).name.clone())),
        MoveOp::Files { user, staged, hash } => {
            let dir = if staged { userfiles::staging_dir(data_dir, &user) } else { userfiles::store_dir(data_dir, &user) };
            done(MoveReply::Files(userfiles::list(&dir, hash).map_err(io)?))
        }
        MoveOp::Read { user, path, offset, len } => {
            let bytes = userfiles::read(&userfiles::store_dir(data_dir, &user), &path, offset, len.min(PIECE)).map_err(io)?;
            Ok((MoveReply::Data, vec![bytes]))
        }
        MoveOp::Stage { user, path, offset, truncate } => {
            if cluster.elsewhere(&user).is_none() {
                return Err(format!("{user} lives on this backend: nothing is staged for them here"));
            }
            let bytes = data.first().map_or(&[][..], |d| &d[..]);
            userfiles::stage(&userfiles::staging_dir(data_dir, &user), &path, offset, bytes, truncate).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Unstage { user, paths } => {
            userfiles::unstage(&userfiles::staging_dir(data_dir, &user), &paths).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Seal { user } => {
            if cluster.elsewhere(&user).is_none() {
                return Err(format!("{user} lives on this backend"));
            }
            userfiles::seal(data_dir, &user).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Commit { ref user, ref moved, token } => {
            let view = cluster.view();
            let here = view.elsewhere(user).is_none();
            if here && moved.backend != view.me {
                // The user's last moment here: only under the mover's hold,
                // which stops ending once this is answered.
                let token = token.ok_or("the user lives here: a move is committed here only under its hold")?;
                answer(ctx.on_worker(user, Request::Move(op.clone()), Vec::new()))?;
                if let Err(e) = cluster.take_move(user, moved.clone()) {
                    let _ = ctx.on_worker(user, Request::Move(MoveOp::Release { user: user.clone(), token }), Vec::new());
                    return Err(e);
                }
            } else {
                if moved.backend == view.me && !here && !userfiles::is_sealed(data_dir, user) {
                    return Err(format!("no sealed copy of the mail of {user} was received here"));
                }
                cluster.take_move(user, moved.clone())?;
            }
            done(MoveReply::Done)
        }
        MoveOp::Moves => done(MoveReply::Moves(cluster.moves())),
        op @ (MoveOp::Hold { .. } | MoveOp::Release { .. } | MoveOp::Discard { .. }) => {
            let user = op.user().unwrap_or_default().to_string();
            done(answer(ctx.on_worker(&user, Request::Move(op), Vec::new()))?)
        }
    }
}

fn answer(a: Result<Answer, String>) -> Result<MoveReply, String> {
    match a? {
        Answer::Move(r) => Ok(r),
        Answer::Import(_) => Err("unexpected answer".into()),
    }
}

/// The parts that run on the user's worker.
pub async fn on_worker(ctx: &Rc<WorkerCtx>, op: MoveOp) -> Result<MoveReply, String> {
    let cluster = ctx.server.cluster.clone().ok_or("this server is not a backend of a cluster")?;
    match op {
        MoveOp::Hold { user, lease_ms } => {
            if cluster.elsewhere(&user).is_some() {
                return Err(format!("{user} does not live on this backend"));
            }
            if ctx.holds.borrow().contains_key(&user) {
                return Err(format!("a move of {user} is already under way"));
            }
            ctx.store.hold(&user);
            cluster.hold_started(&user);
            // What was written before the hold is made durable; nothing is
            // written after it.
            let mut failed = None;
            for t in ctx.store.durable_user(&user) {
                if let Err(e) = t.await {
                    failed = Some(format!("cannot make the mail of {user} durable: {e}"));
                }
            }
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            while failed.is_none() && !ctx.store.settled(&user) {
                if Instant::now() > deadline {
                    failed = Some(format!("the mail of {user} did not settle in {SETTLE_TIMEOUT:?}"));
                }
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            if let Some(e) = failed {
                release(ctx, &user);
                return Err(e);
            }
            // Sessions of the user hear BYE [UNAVAILABLE] (imap_conn.rs).
            ctx.wake_connections();
            let token: u64 = rand::random();
            ctx.holds.borrow_mut().insert(user.clone(), Hold { token, pinned: false });
            let ctx2 = ctx.clone();
            monoio::spawn(async move {
                monoio::time::sleep(Duration::from_millis(lease_ms)).await;
                let expired = ctx2.holds.borrow().get(&user).is_some_and(|h| h.token == token && !h.pinned);
                if expired {
                    tracing::warn!(user, "a move's hold ended without a commit; the user is served here again");
                    release(&ctx2, &user);
                }
            });
            Ok(MoveReply::Held(token))
        }
        MoveOp::Release { user, token } => {
            let live = ctx.holds.borrow().get(&user).map(|h| (h.token == token, h.pinned));
            match live {
                Some((true, false)) => {
                    release(ctx, &user);
                    Ok(MoveReply::Done)
                }
                Some((true, true)) => Err(format!("the move of {user} is committed")),
                _ => Ok(MoveReply::Done),
            }
        }
        MoveOp::Commit { user, token, .. } => {
            let mut holds = ctx.holds.borrow_mut();
            match holds.get_mut(&user) {
                Some(h) if Some(h.token) == token => {
                    h.pinned = true;
                    Ok(MoveReply::Done)
                }
                _ => Err(format!("the hold on {user} ended (its lease ran out, or the server restarted); run the move again")),
            }
        }
        MoveOp::Discard { user } => {
            if cluster.elsewhere(&user).is_none() {
                return Err(format!("{user} lives on this backend: their mail is not discarded"));
            }
            ctx.store.forget(&user);
            ctx.store.release(&user);
            ctx.holds.borrow_mut().remove(&user);
            cluster.hold_ended(&user);
            let data_dir = ctx.server.config.data_dir.clone();
            monoio::spawn_blocking(move || userfiles::discard(&data_dir, &user))
                .await
                .map_err(|_| "the discarding thread failed".to_string())?
                .map_err(|e| format!("cannot discard: {e}"))?;
            Ok(MoveReply::Done)
        }
        _ => Err("not an operation of the user's worker".into()),
    }
}

fn release(ctx: &Rc<WorkerCtx>, user: &str) {
    ctx.holds.borrow_mut().remove(user);
    ctx.store.release(user);
    if let Some(c) = &ctx.server.cluster {
        c.hold_ended(user);
    }
}
