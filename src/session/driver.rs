//! Driving a [`Connection`] in memory, without sockets or a runtime: what
//! the network layer does, with the store's commits run on the spot. The
//! transcript tests, the fuzz targets and the benchmarks all use this one
//! loop (as quinn-proto's tests pair a client and a server in memory).

use super::{Connection, Step};
use crate::auth::{AuthResult, Authenticator};
use crate::proto::Out;
use crate::store::Store;

/// What the connection talks to.
pub struct Env<'a> {
    pub store: &'a Store,
    /// Checks passwords; without one, every login fails.
    pub auth: Option<&'a Authenticator>,
    /// The time, in seconds since the Unix epoch.
    pub now: i64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Waiting for input.
    Read,
    /// In IDLE, waiting for input or a mailbox change.
    Idle,
    Closed,
}

/// Runs `c` until it waits for input or closes. Output accumulates in
/// `out`; whenever the session asks for a flush (a command running in
/// slices), `flushed` gets the output so far and may take it.
pub fn run(c: &mut Connection, env: &Env<'_>, out: &mut Out, flushed: &mut dyn FnMut(&mut Out)) -> Ended {
    let mut step = c.step(env.now, out);
    loop {
        step = match step {
            Step::Read => return Ended::Read,
            Step::Idle => return Ended::Idle,
            Step::Close => return Ended::Closed,
            Step::Flush => {
                flushed(out);
                c.step(env.now, out)
            }
            Step::Authenticate { user, password } => {
                let r = env.auth.map_or(AuthResult::Failed, |a| a.verify_blocking(&user, &password));
                c.auth_done(r, out)
            }
            Step::LoggedIn(user) => match env.store.user(&user, env.now) {
                Ok(u) => {
                    c.attach(u);
                    c.step(env.now, out)
                }
                Err(_) => return Ended::Closed,
            },
            Step::AwaitDurable => {
                env.store.run_pending();
                c.durable_done(out);
                c.step(env.now, out)
            }
            Step::StartTls => {
                c.tls_started();
                c.step(env.now, out)
            }
            // In memory, the transcript stays readable: the session is told
            // compression is on, and the bytes are not compressed.
            Step::Compress => {
                c.compression_started();
                c.step(env.now, out)
            }
        };
    }
}

/// Feeds `input` and runs; returns everything the connection answered.
pub fn exchange(c: &mut Connection, env: &Env<'_>, input: &[u8]) -> (Vec<u8>, Ended) {
    c.decoder().feed(input);
    let mut out = Out::new();
    let mut all = Vec::new();
    let ended = run(c, env, &mut out, &mut |o| {
        all.extend_from_slice(&o.flatten());
        o.clear();
    });
    all.extend_from_slice(&out.flatten());
    (all, ended)
}
