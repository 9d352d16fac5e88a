//! The bodies of the fuzz targets (`fuzz/`), here so that the corpus the
//! fuzzers built is replayed by an ordinary test on the stable toolchain
//! (`tests/fuzz_corpus.rs`) with exactly the checks the fuzzers ran. Each
//! function takes arbitrary bytes and panics only when a property breaks.

use std::rc::Rc;
use std::sync::Arc;

use crate::delivery::smtp::{Dialect, Directory, Limits as SmtpLimits, Session as SmtpSession, Step as SmtpStep};
use crate::proto::{utf7, Decoder, Event, Limits, Out};
use crate::session::driver::{self, Ended, Env};
use crate::session::{ConnFacts, Connection, SessionConfig};
use crate::store::{MemIo, Settings, Store};

const NOW: i64 = 1_700_000_000;

/// The IMAP decoder on any bytes, cut where the first byte says: it must
/// not panic, must not buffer past its limits, and must give the same
/// commands whether the input arrives whole or in two pieces.
pub fn decoder(data: &[u8]) {
    fn commands(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c);
            loop {
                match d.next() {
                    Event::NeedMore => break,
                    Event::Command(c) => out.push(format!("{} {:?}", c.tag, c.body)),
                    Event::AppendStart(_) | Event::AppendNext(_) => d.accept_append(),
                    Event::Bad { tag, .. } => out.push(format!("bad {tag:?}")),
                    Event::Fatal(m) => {
                        out.push(m.to_string());
                        return out;
                    }
                    _ => {}
                }
            }
            assert!(d.pending().len() <= Limits::DEFAULT.line_max + 64 * 1024, "decoder buffered past its limits");
        }
        out
    }
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = (cut as usize * rest.len()) / 255;
    assert_eq!(commands(&[rest]), commands(&[&rest[..at], &rest[at..]]));
}

/// Modified UTF-7 (RFC 3501 5.1.3): decoding any bytes does not panic,
/// and whatever decodes re-encodes to a name that decodes to the same.
pub fn utf7(data: &[u8]) {
    if let Some(name) = utf7::decode(data) {
        assert_eq!(utf7::decode(utf7::encode(&name).as_bytes()).as_deref(), Some(name.as_str()));
    }
}

/// Message analysis at delivery (ENVELOPE, BODYSTRUCTURE, part offsets):
/// no panic, every part inside the message, and the cache reads back.
pub fn mime(data: &[u8]) {
    let a = crate::mime::structure::analyze(data);
    assert!(a.header_len as usize <= data.len());
    for p in &a.parts {
        assert!(p.header <= p.body && p.body <= p.end && p.end as usize <= data.len(), "part {:?} outside the message", p.path);
    }
    let blob = crate::mime::analyze(data);
    assert!(crate::mime::Cache::parse(&blob).is_some(), "the cache of any message reads back");
    if let Some(converted) = crate::mime::base64_binary_parts(data) {
        crate::mime::structure::analyze(&converted);
    }
    // URLFETCH's binary form (RFC 5524), both ways it is made.
    for relabel in [true, false] {
        if let Some(decoded) = crate::mime::decoded_leaves(data, relabel) {
            crate::mime::structure::analyze(&decoded);
        }
    }
}

struct Dir;

impl Directory for Dir {
    fn user_exists(&self, user: &str) -> bool {
        user.len().is_multiple_of(2)
    }
    fn is_local_domain(&self, domain: &str, _: Dialect) -> bool {
        domain.ends_with(".org")
    }
}

/// The LMTP/SMTP engine on any client bytes: no panic; every envelope has
/// a recipient, its size is the data handed out, and that data has CRLF
/// line ends only.
pub fn smtp(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dialect = if mode & 1 == 0 { Dialect::Lmtp } else { Dialect::Smtp };
    let mut s = SmtpSession::new(dialect, "mx.example.org", SmtpLimits { max_message: 1 << 16, ..SmtpLimits::default() });
    if mode & 2 != 0 {
        s.offer_tls();
    }
    let mut out = Vec::new();
    let mut message = Vec::new();
    s.greeting(&mut out);
    for chunk in rest.chunks(((mode >> 2) as usize).max(1)) {
        s.feed(chunk);
        loop {
            let step = s.step(&Dir, &mut out);
            message.extend_from_slice(s.pending_data());
            s.clear_data();
            match step {
                SmtpStep::Read => {
                    if !s.in_data() {
                        message.clear();
                    }
                    break;
                }
                SmtpStep::Deliver(env) => {
                    assert!(!env.recipients.is_empty());
                    assert_eq!(env.size, message.len() as u64);
                    for (i, &b) in message.iter().enumerate() {
                        match b {
                            b'\r' => assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR stored"),
                            b'\n' => assert!(i > 0 && message[i - 1] == b'\r', "bare LF stored"),
                            _ => {}
                        }
                    }
                    message.clear();
                    let results: Vec<_> = env.recipients.iter().map(|_| Ok(())).collect();
                    s.delivered(&results, &mut out);
                }
                SmtpStep::StartTls => s.tls_started(),
                SmtpStep::Close => return,
            }
        }
        out.clear();
    }
}

/// A whole IMAP session, logged in, on an in-memory store with a few
/// messages, driven by arbitrary client bytes: no input may panic it.
pub fn session(data: &[u8]) {
    let store = Store::new(Rc::new(MemIo::new()), std::path::Path::new("/f"), Settings { segment_size: 1 << 20, ..Settings::default() });
    let Ok(user) = store.user("fuzz", NOW) else { return };
    if let Ok(inbox) = user.mailbox("INBOX") {
        let mut mb = inbox.borrow_mut();
        for i in 0..3 {
            let _ = mb.append_bytes(&ringmail_kit::corpus::message(7, i), 0, 0, NOW);
        }
        let _ = mb.commit();
    }
    let mut c =
        Connection::preauthenticated(Arc::new(SessionConfig::default()), ConnFacts { tls: false, cleartext_ok: true, compressed: false }, "fuzz".into());
    // A signal, so NOTIFY registers and hears the session's own changes.
    c.set_signal(crate::signal::Signal::new());
    c.attach(user);
    let env = Env { store: &store, auth: None, now: NOW };
    let mut out = Out::new();
    for chunk in data.chunks(64) {
        c.decoder().feed(chunk);
        if driver::run(&mut c, &env, &mut out, &mut |o| o.clear()) == Ended::Closed {
            return;
        }
        out.clear();
    }
}

/// A whole message through delivery, MIME analysis and FETCH of every
/// structure item and part, on a thread with a small stack (as a worker
/// would meet it): nothing may panic or recurse with the input.
pub fn message(data: &[u8]) {
    let data = data.to_vec();
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let store = Store::new(Rc::new(MemIo::new()), std::path::Path::new("/f"), Settings { segment_size: 1 << 20, ..Settings::default() });
            let Ok(mb) = crate::delivery::store_copy(&store, "fuzz", None, &[&data], NOW) else { return };
            let _ = store.block_on(store.durable(crate::store::Target::Mailbox(mb)));
            let Ok(user) = store.user("fuzz", NOW) else { return };
            let mut c = Connection::preauthenticated(Arc::new(SessionConfig::default()), ConnFacts { tls: false, cleartext_ok: true, compressed: false }, "fuzz".into());
            c.attach(user);
            let env = Env { store: &store, auth: None, now: NOW };
            driver::exchange(
                &mut c,
                &env,
                b"s SELECT INBOX\r\n\
                  f FETCH 1 (ENVELOPE BODY BODYSTRUCTURE RFC822.SIZE BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.1.HEADER] BODY.PEEK[TEXT] BINARY.PEEK[1] BINARY.SIZE[2])\r\n\
                  t SEARCH TEXT \"needle\" FROM \"x\"\r\n",
            );
        })
        .expect("spawn")
        .join()
        .expect("no panic, no stack overflow");
}

/// A POP3 session on an in-memory store with a few messages, driven by
/// arbitrary client bytes (any password works for "fuzz", others fail):
/// no input may panic it, and no step may write more than its output
/// budget beyond one message slice.
pub fn pop3(data: &[u8]) {
    use crate::pop3::{Facts, Maildrop, Session, Step, BUDGET};
    let store = Store::new(Rc::new(MemIo::new()), std::path::Path::new("/p"), Settings { segment_size: 1 << 20, ..Settings::default() });
    let Ok(user) = store.user("fuzz", NOW) else { return };
    if let Ok(inbox) = user.mailbox("INBOX") {
        let mut mb = inbox.borrow_mut();
        for i in 0..3 {
            let _ = mb.append_bytes(&ringmail_kit::corpus::message(9, i), 0, 0, NOW);
        }
        let _ = mb.commit();
    }
    let mut s = Session::new(Facts { tls: false, cleartext_ok: true, can_stls: true });
    let mut out = Out::new();
    s.greeting(&mut out);
    for chunk in data.chunks(32) {
        s.feed(chunk);
        let mut step = s.step(&mut out);
        loop {
            assert!(out.len() <= BUDGET + 8192, "a step wrote {} bytes", out.len());
            out.clear();
            step = match step {
                Step::Read => break,
                Step::Close => return,
                Step::Flush => s.step(&mut out),
                Step::StartTls => {
                    s.tls_started();
                    s.step(&mut out)
                }
                Step::Authenticate { user, .. } => {
                    let r = if user == "fuzz" { crate::auth::AuthResult::Ok("fuzz".into()) } else { crate::auth::AuthResult::Failed };
                    s.auth_done(r, &mut out)
                }
                Step::Open(_) => {
                    let m = store.user("fuzz", NOW).map_err(|e| e.to_string()).and_then(Maildrop::open);
                    s.opened(m.map_err(|_| crate::pop3::OpenError::Unavailable), &mut out)
                }
                Step::AwaitDurable(_) => s.quit_done(Ok(()), &mut out),
            };
        }
    }
}

/// Dovecot's auth protocol on any lines (after a valid VERSION): no panic,
/// and every answer is one line.
pub fn dovecot_auth(data: &[u8]) {
    use crate::auth::dovecot_protocol::{Action, Connection};
    let mut c = Connection::default();
    let ok = |_: Option<std::net::IpAddr>| true;
    let _ = c.line(b"VERSION\t1\t2", &ok);
    for line in data.split(|&b| b == b'\n') {
        match c.line(line, &ok) {
            Action::Reply(r) => assert!(r.is_empty() || (r.ends_with('\n') && r.matches('\n').count() == 1), "{r:?}"),
            Action::Check(chk) => {
                let r = c.checked(&chk, &crate::auth::AuthResult::Failed);
                assert!(r.ends_with('\n') && r.matches('\n').count() == 1, "{r:?}");
            }
            Action::Close(_) => return,
        }
    }
}
