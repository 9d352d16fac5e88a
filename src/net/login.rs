//! Password checks for every protocol (IMAP LOGIN and AUTHENTICATE, POP3
//! USER/PASS and AUTH): from the cache of verified credentials, or with
//! the slow hash on the blocking pool so the worker keeps serving; the
//! cluster's refusals; the metrics; and, for a failure, the growing per-IP
//! delay before the answer.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::context::WorkerCtx;
use crate::auth::AuthResult;
use crate::metrics;

/// Checks `password` for `user`, connecting from `client`.
pub async fn check(ctx: &Rc<WorkerCtx>, client: IpAddr, user: &str, password: &[u8]) -> AuthResult {
    let auth = ctx.server.auth.clone();
    let name = crate::auth::passwd::normalize_user_name(user);
    let result = loop {
        let stored = match auth.check_cached(user, password) {
            (Some(true), _) => break AuthResult::Ok(name),
            (_, None) => break AuthResult::Failed,
            (_, Some(stored)) => stored,
        };
        // Many connections of one user logging in at once (a client
        // opening every folder, a reconnect storm after a restart) wait
        // for one hash on this worker instead of each queueing its own.
        let waiting = ctx.verifying.borrow().get(&name).cloned();
        if let Some(done) = waiting {
            let _ = done.recv_async().await;
            continue;
        }
        let _in_flight = InFlight::start(ctx, &name);
        let (auth, user, password) = (auth.clone(), user.to_string(), password.to_vec());
        break monoio::spawn_blocking(move || auth.verify_slow(&user, &password, &stored)).await.unwrap_or(AuthResult::Unavailable);
    };
    // In a cluster, a user whose mail lives on another backend is not
    // served here (a client that bypassed the proxy would otherwise start a
    // second copy of the mailbox), nor one held for a move there.
    let result = match (result, ctx.server.cluster.as_ref()) {
        (AuthResult::Ok(name), Some(c)) if c.elsewhere(&name).is_some() || c.is_moving(&name) => {
            tracing::info!(user = name, client = %client, "login for a user of another backend, or moving there, refused");
            AuthResult::Unavailable
        }
        (r, _) => r,
    };
    metrics::with_worker(|m| match result {
        AuthResult::Ok(_) => m.logins_ok.fetch_add(1, Relaxed),
        _ => m.logins_failed.fetch_add(1, Relaxed),
    });
    if result == AuthResult::Failed {
        let delay = ctx.server.failures.failed(client, Instant::now());
        monoio::time::sleep(delay).await;
    }
    result
}

/// A password verification in progress on this worker. Connections of the
/// same user wait on its channel, which disconnects when this is dropped:
/// when the hash is done, or when the verifying connection goes away.
struct InFlight {
    ctx: Rc<WorkerCtx>,
    name: String,
    _done: flume::Sender<()>,
}

impl InFlight {
    fn start(ctx: &Rc<WorkerCtx>, name: &str) -> InFlight {
        let (done, waiters) = flume::bounded(0);
        ctx.verifying.borrow_mut().insert(name.to_string(), waiters);
        InFlight { ctx: ctx.clone(), name: name.to_string(), _done: done }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ctx.verifying.borrow_mut().remove(&self.name);
    }
}
