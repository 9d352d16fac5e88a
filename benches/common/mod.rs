//! What the benchmarks that drive the protocol core share: a
//! preauthenticated session on a store of corpus messages, and running one
//! command through it the way the network layer does.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use ringmail::config::SyncMode;
use ringmail::proto::Out;
use ringmail::session::driver::{self, Env};
use ringmail::session::{ConnFacts, Connection, SessionConfig};
use ringmail::store::{RealIo, Settings, Store};

pub const NOW: i64 = 1_700_000_000;

/// A preauthenticated session on a store with `messages` corpus messages.
pub fn session(dir: &Path, messages: u64, extra: Option<&[u8]>) -> (Connection, Store) {
    let store = Store::new(Rc::new(RealIo::inline()), dir, Settings { sync: SyncMode::Never, ..Settings::default() });
    let user = store.user("bench", NOW).unwrap();
    {
        let inbox = user.mailbox("INBOX").unwrap();
        let mut mb = inbox.borrow_mut();
        for i in 0..messages {
            // Arrival times a second apart, the newest at NOW.
            mb.append_bytes(&ringmail_kit::corpus::message(42, i), 0, 0, NOW - (messages - i) as i64).unwrap();
        }
        if let Some(m) = extra {
            mb.append_bytes(m, 0, 0, NOW).unwrap();
        }
        mb.checkpoint().unwrap();
    }
    let cfg = Arc::new(SessionConfig::default());
    let mut c = Connection::preauthenticated(cfg, ConnFacts { tls: false, cleartext_ok: true, compressed: false }, "bench".into());
    c.attach(user);
    let mut out = Out::new();
    run(&mut c, &store, "s SELECT INBOX\r\n", &mut out, &mut |_| {});
    (c, store)
}

/// Runs one command; whenever the session asks for a flush, `sink` gets
/// the output so far, which is then cleared (as the network layer does).
pub fn run(c: &mut Connection, store: &Store, cmd: &str, out: &mut Out, sink: &mut dyn FnMut(&Out)) {
    c.decoder().feed(cmd.as_bytes());
    let env = Env { store, auth: None, now: NOW };
    driver::run(c, &env, out, &mut |o| {
        sink(o);
        o.clear();
    });
    sink(out);
    out.clear();
}
