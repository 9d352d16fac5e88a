//! Storing delivered mail on the worker that owns the recipient (users are
//! sharded across workers): copies for users here are written at once, the
//! rest travel to their worker as [`DeliveryJob`]s, and every copy is
//! answered only after the group commit made it durable.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::context::{DeliveryJob, WorkerCtx, WorkerMsg};
use super::spool::Body;
use crate::delivery::forward::{forward, Rcpt};
use crate::delivery::smtp::DeliveryError;
use crate::delivery::store_copy;
use crate::store::{Target, Ticket};

/// A copy to deliver, with its own trace headers.
pub struct Copy {
    pub user: String,
    pub mailbox: Option<String>,
    pub prefix: Vec<u8>,
    /// The envelope, for passing the message on to the user's backend.
    pub from: String,
    pub address: String,
    /// Passed on to us already: store here or refuse.
    pub hop: bool,
}

/// Stores `copies` of `data` and reports each result, in order. A user and
/// mailbox named by several recipients (the same address twice, or two
/// spellings of it) get one copy, and each of those recipients its result.
pub async fn deliver_all(ctx: &Rc<WorkerCtx>, copies: Vec<Copy>, data: &Arc<Body>) -> Vec<Result<(), DeliveryError>> {
    let mut unique: Vec<Copy> = Vec::with_capacity(copies.len());
    let mut slot = Vec::with_capacity(copies.len());
    for c in copies {
        match unique.iter().position(|u| u.user == c.user && u.mailbox == c.mailbox) {
            Some(i) => slot.push(i),
            None => {
                slot.push(unique.len());
                unique.push(c);
            }
        }
    }
    let results = deliver_unique(ctx, unique, data).await;
    slot.into_iter().map(|i| results[i].clone()).collect()
}

async fn deliver_unique(ctx: &Rc<WorkerCtx>, copies: Vec<Copy>, data: &Arc<Body>) -> Vec<Result<(), DeliveryError>> {
    enum Pending {
        Done(Result<(), DeliveryError>),
        Here(Ticket),
        There(flume::Receiver<Result<(), DeliveryError>>),
    }
    let now = WorkerCtx::now();
    let mut pending = Vec::with_capacity(copies.len());
    // Copies whose user lives on another backend of the cluster, by backend.
    let mut away: Vec<(SocketAddr, Vec<(usize, Copy)>)> = Vec::new();
    for c in copies {
        if let Some(b) = ctx.server.cluster.as_ref().and_then(|cl| cl.elsewhere(&c.user)) {
            if c.hop {
                // Two cluster maps disagree (a reload under way): the MTA retries.
                tracing::warn!(user = c.user, backend = b.name, "mail passed on by another backend belongs elsewhere by this map; deferred");
                pending.push(Pending::Done(Err(DeliveryError::Temporary("the cluster's backends disagree where this user lives; try again".into()))));
                continue;
            }
            let slot = pending.len();
            pending.push(Pending::Done(Ok(())));
            match away.iter_mut().find(|(a, _)| *a == b.lmtp) {
                Some((_, v)) => v.push((slot, c)),
                None => away.push((b.lmtp, vec![(slot, c)])),
            }
            continue;
        }
        if ctx.is_home_of(&c.user) {
            // Written now; the commit runs as its own task so that copies to
            // several mailboxes here share one group commit.
            pending.push(match store_copy(&ctx.store, &c.user, c.mailbox.as_deref(), &[&c.prefix, (**data).as_ref()], now) {
                Ok(mb) => Pending::Here(ctx.store.durable(Target::Mailbox(mb))),
                Err(e) => Pending::Done(Err(e)),
            });
        } else {
            let (tx, rx) = flume::bounded(1);
            let job = DeliveryJob { user: c.user, mailbox: c.mailbox, prefix: c.prefix, data: data.clone(), reply: tx };
            pending.push(match ctx.server.send(ctx.server.home(&job.user), WorkerMsg::Deliver(Box::new(job))) {
                true => Pending::There(rx),
                false => Pending::Done(Err(DeliveryError::Temporary("server shutting down".into()))),
            });
        }
    }
    // Each other backend gets one LMTP transaction for its recipients (on
    // the blocking pool; their answers arrive when the owner has stored).
    let timeout = ctx.server.config.delivery.timeout;
    for (to, group) in away {
        let rcpts: Vec<Rcpt> = group.iter().map(|(_, c)| Rcpt { address: c.address.clone(), mailbox: c.mailbox.clone() }).collect();
        let (from, body) = (group[0].1.from.clone(), data.clone());
        let answers = monoio::spawn_blocking(move || forward(to, &from, &rcpts, (*body).as_ref(), timeout))
            .await
            .unwrap_or_else(|_| group.iter().map(|_| Err(DeliveryError::Temporary("forwarding failed".into()))).collect());
        for ((slot, _), r) in group.iter().zip(answers) {
            pending[*slot] = Pending::Done(r);
        }
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match p {
            Pending::Done(r) => r,
            Pending::Here(t) => t.await.map_err(sync_failed),
            Pending::There(rx) => rx.recv_async().await.unwrap_or_else(|_| Err(DeliveryError::Temporary("server shutting down".into()))),
        });
    }
    results
}

fn sync_failed(e: std::io::Error) -> DeliveryError {
    if crate::store::io::is_full(&e) {
        return DeliveryError::Full;
    }
    tracing::error!(error = %e, "delivery not durable");
    DeliveryError::Temporary("cannot make the message durable".into())
}

/// Runs a job sent by another worker: store, commit, answer.
pub async fn run_job(ctx: Rc<WorkerCtx>, job: Box<DeliveryJob>) {
    let r = match store_copy(&ctx.store, &job.user, job.mailbox.as_deref(), &[&job.prefix, (*job.data).as_ref()], WorkerCtx::now()) {
        Ok(mb) => ctx.store.durable(Target::Mailbox(mb)).await.map_err(sync_failed),
        Err(e) => Err(e),
    };
    let _ = job.reply.send(r);
}
