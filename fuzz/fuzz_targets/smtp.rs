//! The LMTP/SMTP engine on arbitrary client bytes: no panic, and every
//! envelope it hands over has at least one recipient and a message that
//! ended with the end-of-data marker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::delivery::smtp::{Dialect, Directory, Limits, Session, Step};

struct Dir;

impl Directory for Dir {
    fn user_exists(&self, user: &str) -> bool {
        user.len() % 2 == 0
    }
    fn is_local_domain(&self, domain: &str, _: Dialect) -> bool {
        domain.ends_with(".org")
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dialect = if mode & 1 == 0 { Dialect::Lmtp } else { Dialect::Smtp };
    let mut s = Session::new(dialect, "mx.example.org", Limits { max_message: 1 << 16, ..Limits::default() });
    if mode & 2 != 0 {
        s.offer_tls();
    }
    let mut out = Vec::new();
    s.greeting(&mut out);
    for chunk in rest.chunks(((mode >> 2) as usize).max(1)) {
        s.feed(chunk);
        loop {
            match s.step(&Dir, &mut out) {
                Step::Read => break,
                Step::Deliver(env) => {
                    assert!(!env.recipients.is_empty());
                    let results: Vec<_> = env.recipients.iter().map(|_| Ok(())).collect();
                    s.delivered(&results, &mut out);
                }
                Step::StartTls => s.tls_started(),
                Step::Close => return,
            }
        }
        out.clear();
    }
});
