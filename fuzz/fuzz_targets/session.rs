//! A whole IMAP session (logged in, on a real store in a temporary
//! directory) driven by arbitrary client bytes: no input may panic it.
#![no_main]

use std::rc::Rc;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ringmail::config::SyncMode;
use ringmail::proto::Out;
use ringmail::session::driver::{self, Ended, Env};
use ringmail::session::{ConnFacts, Connection, SessionConfig};
use ringmail::store::{RealIo, Settings, Store};

thread_local! {
    static STORE: Store = {
        let dir = std::env::temp_dir().join(format!("ringmail-fuzz-{}", std::process::id()));
        Store::new(Rc::new(RealIo::inline()), &dir, Settings { sync: SyncMode::Never, ..Settings::default() })
    };
}

fuzz_target!(|data: &[u8]| {
    STORE.with(|store| {
        let Ok(user) = store.user("fuzz", 1_700_000_000) else { return };
        let mut c = Connection::preauthenticated(Arc::new(SessionConfig::default()), ConnFacts { tls: false, cleartext_ok: true }, "fuzz".into());
        c.attach(user);
        let env = Env { store, auth: None, now: 1_700_000_000 };
        let mut out = Out::new();
        for chunk in data.chunks(64) {
            c.decoder().feed(chunk);
            if driver::run(&mut c, &env, &mut out, &mut |o| o.clear()) == Ended::Closed {
                return;
            }
            out.clear();
        }
    });
});
