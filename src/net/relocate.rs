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
    let lives_here = |user: &str| cluster.elsewhere(user).is_none();
    match op {
        MoveOp::Where { user } => done(MoveReply::Home(cluster.view().map.home(&user).name.clone())),
        MoveOp::Claim { user, lease_ms } => {
            if !lives_here(&user) {
                return Err(format!("{user} does not live on this backend"));
            }
            done(MoveReply::Claimed(cluster.claim(&user, Duration::from_millis(lease_ms))?))
        }
        MoveOp::Files { user, id, staged } => {
            let dir = match staged {
                false => cluster.renew(&user, id).map(|_| userfiles::store_dir(data_dir, &user))?,
                true => cluster.is_receiving(&user, id).map(|_| userfiles::staging_dir(data_dir, &user))?,
            };
            let now = userfiles::now();
            done(MoveReply::Files { files: userfiles::list(&dir).map_err(io)?, now })
        }
        MoveOp::Blocks { user, id, path } => {
            cluster.renew(&user, id)?;
            let (len, blocks) = userfiles::blocks(&userfiles::store_dir(data_dir, &user), &path).map_err(io)?;
            done(MoveReply::Blocks { len, blocks })
        }
        MoveOp::Read { user, id, path, offset, len } => {
            cluster.renew(&user, id)?;
            let bytes = userfiles::read(&userfiles::store_dir(data_dir, &user), &path, offset, len.min(PIECE)).map_err(io)?;
            Ok((MoveReply::Data, vec![bytes]))
        }
        MoveOp::Stage { user, id, path, offset, zeros } => {
            cluster.is_receiving(&user, id)?;
            let staging = userfiles::staging_dir(data_dir, &user);
            match zeros {
                0 => userfiles::stage(&staging, &path, offset, data.first().map_or(&[][..], |d| &d[..])),
                n => userfiles::stage_zeros(&staging, &path, offset, n),
            }
            .map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Truncate { user, id, path, len } => {
            cluster.is_receiving(&user, id)?;
            userfiles::stage_len(&userfiles::staging_dir(data_dir, &user), &path, len).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Unstage { user, id, paths } => {
            cluster.is_receiving(&user, id)?;
            userfiles::unstage(&userfiles::staging_dir(data_dir, &user), &paths).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Seal { user, id } => {
            cluster.is_receiving(&user, id)?;
            userfiles::seal(data_dir, &user, id).map_err(io)?;
            done(MoveReply::Done)
        }
        MoveOp::Hold { ref user, id, .. } => {
            cluster.renew(user, id)?;
            done(answer(ctx.on_worker(user, Request::Move(op.clone()), Vec::new()))?)
        }
        MoveOp::Release { ref user, id } => {
            let r = answer(ctx.on_worker(user, Request::Move(op.clone()), Vec::new()));
            cluster.end_claim(user, id);
            done(r?)
        }
        MoveOp::Commit { ref user, ref moved } => {
            let me = cluster.view().me.clone();
            if lives_here(user) && moved.backend != me {
                // The user's last moment here: only under the move's hold,
                // which stops ending once this is answered.
                answer(ctx.on_worker(user, Request::Move(op.clone()), Vec::new()))?;
                cluster.end_claim(user, moved.id);
                if let Err(e) = cluster.take_move(user, moved.clone()) {
                    let _ = ctx.on_worker(user, Request::Move(MoveOp::Release { user: user.clone(), id: moved.id }), Vec::new());
                    return Err(e);
                }
            } else {
                if moved.backend == me && !lives_here(user) && userfiles::sealed_for(data_dir, user) != Some(moved.id) {
                    return Err(format!("no copy of the mail of {user} sealed for this move is here"));
                }
                cluster.take_move(user, moved.clone())?;
            }
            done(MoveReply::Done)
        }
        MoveOp::Moves => done(MoveReply::Moves(cluster.moves())),
        op @ (MoveOp::Receive { .. } | MoveOp::Discard { .. }) => {
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
        MoveOp::Hold { user, id, lease_ms } => {
            if cluster.elsewhere(&user).is_some() {
                return Err(format!("{user} does not live on this backend"));
            }
            if ctx.holds.borrow().contains_key(&user) {
                return Err(format!("{user} is held for a move already"));
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
            ctx.holds.borrow_mut().insert(user.clone(), Hold { id, pinned: false });
            let ctx2 = ctx.clone();
            monoio::spawn(async move {
                monoio::time::sleep(Duration::from_millis(lease_ms)).await;
                let expired = ctx2.holds.borrow().get(&user).is_some_and(|h| h.id == id && !h.pinned);
                if expired {
                    tracing::warn!(user, "a move's hold ended without a commit; the user is served here again");
                    release(&ctx2, &user);
                }
            });
            Ok(MoveReply::Done)
        }
        MoveOp::Release { user, id } => {
            let live = ctx.holds.borrow().get(&user).map(|h| (h.id == id, h.pinned));
            match live {
                Some((true, false)) => {
                    release(ctx, &user);
                    Ok(MoveReply::Done)
                }
                Some((true, true)) => Err(format!("the move of {user} is committed")),
                _ => Ok(MoveReply::Done),
            }
        }
        MoveOp::Commit { user, moved } => {
            let mut holds = ctx.holds.borrow_mut();
            match holds.get_mut(&user) {
                Some(h) if h.id == moved.id => {
                    h.pinned = true;
                    Ok(MoveReply::Done)
                }
                _ => Err(format!("the hold on {user} ended (its lease ran out, or the server restarted); run the move again")),
            }
        }
        MoveOp::Receive { user, id } => {
            discard(ctx, &cluster, &user).await?;
            cluster.receive(&user, id);
            Ok(MoveReply::Done)
        }
        MoveOp::Discard { user } => {
            discard(ctx, &cluster, &user).await?;
            Ok(MoveReply::Done)
        }
        _ => Err("not an operation of the user's worker".into()),
    }
}

/// Forgets the store of a user who does not live here, and removes it and
/// any staged copy.
async fn discard(ctx: &Rc<WorkerCtx>, cluster: &super::cluster::Cluster, user: &str) -> Result<(), String> {
    if cluster.elsewhere(user).is_none() {
        return Err(format!("{user} lives on this backend: their mail is not discarded"));
    }
    ctx.store.forget(user);
    ctx.store.release(user);
    ctx.holds.borrow_mut().remove(user);
    cluster.hold_ended(user);
    let (data_dir, user) = (ctx.server.config.data_dir.clone(), user.to_string());
    monoio::spawn_blocking(move || userfiles::discard(&data_dir, &user))
        .await
        .map_err(|_| "the discarding thread failed".to_string())?
        .map_err(|e| format!("cannot discard: {e}"))
}

fn release(ctx: &Rc<WorkerCtx>, user: &str) {
    ctx.holds.borrow_mut().remove(user);
    ctx.store.release(user);
    if let Some(c) = &ctx.server.cluster {
        c.hold_ended(user);
    }
}
