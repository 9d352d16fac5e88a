//! Transcript tests of the sans-io protocol core: client bytes in, exact
//! server bytes out, with no sockets. Each file in tests/transcripts/ is
//! replayed whole, one byte at a time, and in random splits; the output must
//! be identical every time.
//!
//! Format: `Cn: text` is a line session n sends (CRLF appended), `Sn: text`
//! a line it must receive, `Cn+` appends without a line end, `#` comments.
//! Sessions in IDLE, or registered with NOTIFY, hear of changes as they happen.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringmail::auth::{Authenticator, UserDb};
use ringmail::proto::{Limits, Out};
use ringmail::session::driver::{self, Ended, Env};
use ringmail::session::{ConnFacts, Connection, SessionConfig};
use ringmail::signal::Signal;
use ringmail::store::{MemIo, Settings, Store};

const NOW: i64 = 1_700_000_000;

struct Sess {
    conn: Connection,
    signal: Rc<Signal>,
    out: Vec<u8>,
    closed: bool,
}

struct World {
    store: Store,
    auth: Authenticator,
    _dir: tempfile::TempDir,
    sessions: BTreeMap<u32, Sess>,
    cfg: Arc<SessionConfig>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        // quo has a quota in Dovecot's form (quota.txt).
        std::fs::write(&p, "joe:{PLAIN}secret\nann:{PLAIN}pw\nquo:{PLAIN}pw::::::userdb_quota_rule=*:storage=1k userdb_quota_rule2=*:messages=4\n").unwrap();
        let db = Arc::new(UserDb::open(&p).unwrap());
        let auth = Authenticator::new(db.clone(), Duration::from_secs(60));
        let mut store = Store::new(Rc::new(MemIo::new()), Path::new("/mail"), Settings::default());
        store.set_quota_source(ringmail::delivery::quota_source(db, &Default::default()));
        let limits = Limits { message_max: 1 << 20, ..Limits::DEFAULT };
        // Small METADATA limits and an administrator entry (metadata.txt).
        let metadata = ringmail::store::metadata::Limits { max_value: 64, max_entries: 6, max_total: 1024 };
        let admin = Some("mailto:postmaster@example.org".to_string());
        let cfg = Arc::new(SessionConfig { limits: Arc::new(limits), max_auth_failures: 3, starttls: false, metadata, admin, ..SessionConfig::default() });
        World { store, auth, _dir: dir, sessions: BTreeMap::new(), cfg }
    }

    fn session(&mut self, n: u32) -> &mut Sess {
        let cfg = self.cfg.clone();
        self.sessions.entry(n).or_insert_with(|| {
            // Session 9 is on a connection where cleartext passwords are refused.
            let facts = ConnFacts { tls: false, cleartext_ok: n != 9, compressed: false };
            let mut conn = Connection::new(cfg, facts);
            let signal = Signal::new();
            conn.set_signal(signal.clone());
            let mut out = Out::new();
            conn.greeting(&mut out);
            Sess { conn, signal, out: out.flatten(), closed: false }
        })
    }

    /// Runs a session until it waits for input.
    fn drive(&mut self, n: u32) {
        self.session(n);
        let World { store, auth, sessions, .. } = self;
        let s = sessions.get_mut(&n).unwrap();
        let env = Env { store, auth: Some(auth), now: NOW };
        let mut out = Out::new();
        let mut flushed = Vec::new();
        if driver::run(&mut s.conn, &env, &mut out, &mut |o| {
            flushed.extend_from_slice(&o.flatten());
            o.clear();
        }) == Ended::Closed
        {
            s.closed = true;
        }
        s.out.extend_from_slice(&flushed);
        s.out.extend_from_slice(&out.flatten());
    }

    fn feed(&mut self, n: u32, bytes: &[u8], split: &mut dyn FnMut(usize) -> usize) {
        self.session(n);
        let mut at = 0;
        while at < bytes.len() {
            let k = split(bytes.len() - at).clamp(1, bytes.len() - at);
            let s = self.sessions.get_mut(&n).unwrap();
            assert!(!s.closed, "session {n} is closed but the transcript sends more");
            s.conn.decoder().feed(&bytes[at..at + k]);
            at += k;
            self.drive(n);
        }
        self.idle_notifications();
    }

    /// Sessions in IDLE hear about changes made by others, and so do
    /// sessions that asked with NOTIFY (once no command is in progress).
    fn idle_notifications(&mut self) {
        let mut listening = Vec::new();
        for (&n, s) in self.sessions.iter_mut() {
            if s.signal.take() && !s.closed {
                if s.conn.is_idling() {
                    let mut out = Out::new();
                    while s.conn.notify(&mut out) {}
                    s.out.extend_from_slice(&out.flatten());
                } else if s.conn.is_listening() {
                    listening.push(n);
                }
            }
        }
        for n in listening {
            self.drive(n);
        }
    }
}

struct Transcript {
    inputs: Vec<(u32, Vec<u8>)>,
    expected: BTreeMap<u32, Vec<u8>>,
}

fn parse(text: &str) -> Transcript {
    let mut inputs = Vec::new();
    let mut expected: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, rest) = line.split_once(':').unwrap_or_else(|| panic!("bad transcript line {line:?}"));
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (kind, num) = head.split_at(1);
        let (num, raw) = match num.strip_suffix('+') {
            Some(n) => (n, true),
            None => (num, false),
        };
        let n: u32 = num.parse().unwrap_or_else(|_| panic!("bad session number in {line:?}"));
        let mut bytes = unescape(rest);
        match kind {
            "C" => {
                if !raw {
                    bytes.extend_from_slice(b"\r\n");
                }
                inputs.push((n, bytes));
            }
            "S" => {
                bytes.extend_from_slice(b"\r\n");
                expected.entry(n).or_default().extend_from_slice(&bytes);
            }
            _ => panic!("bad transcript line {line:?}"),
        }
    }
    Transcript { inputs, expected }
}

/// What [`unescape`] reads back as `l`: a backslash is doubled only where
/// it would otherwise start an escape, so `\Seen` stays as it is.
fn escape(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut it = l.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' if matches!(it.peek(), Some('r' | 'n' | '0' | '\\') | None) => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out
}

/// `\r`, `\n`, `\0` and `\\` escapes, for bytes a line cannot hold.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b'r') => out.push(b'\r'),
                Some(b'n') => out.push(b'\n'),
                Some(b'0') => out.push(0),
                Some(b'\\') => out.push(b'\\'),
                Some(c) => {
                    out.push(b'\\');
                    out.push(c);
                }
                None => out.push(b'\\'),
            }
        } else {
            out.push(b);
        }
    }
    out
}

fn replay(t: &Transcript, split: &mut dyn FnMut(usize) -> usize) -> BTreeMap<u32, Vec<u8>> {
    let mut w = World::new();
    for (n, bytes) in &t.inputs {
        w.feed(*n, bytes, split);
    }
    w.sessions.into_iter().map(|(n, s)| (n, s.out)).collect()
}

/// `RINGMAIL_BLESS=1`: rewrites the file with the `S` lines this run
/// produces after each `C` line (for writing new transcripts; review them).
fn bless(path: &Path, text: &str) {
    let mut w = World::new();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('S') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let t = parse(line);
        for (n, _) in &t.inputs {
            if !w.sessions.contains_key(n) {
                let greeting = String::from_utf8_lossy(&w.session(*n).out).trim_end().to_string();
                let at = out.len() - line.len() - 1;
                out.insert_str(at, &format!("S{n}: {greeting}\n"));
            }
        }
        let before: BTreeMap<u32, usize> = w.sessions.iter().map(|(n, s)| (*n, s.out.len())).collect();
        for (n, bytes) in &t.inputs {
            w.feed(*n, bytes, &mut |k| k);
        }
        for (n, s) in &w.sessions {
            let new = &s.out[before.get(n).copied().unwrap_or(0)..];
            for l in String::from_utf8_lossy(new).split_inclusive("\r\n") {
                let l = l.strip_suffix("\r\n").unwrap_or(l);
                out.push_str(&format!("S{n}: {}\n", escape(l)));
            }
        }
    }
    std::fs::write(path, out).unwrap();
}

fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if std::env::var_os("RINGMAIL_BLESS").is_some() {
        bless(&path, &text);
        return;
    }
    let t = parse(&text);
    let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\r', "");
    let whole = replay(&t, &mut |n| n);
    for (n, want) in &t.expected {
        let got = whole.get(n).cloned().unwrap_or_default();
        assert!(got == *want, "{name}: session {n} differs\n--- expected\n{}\n--- got\n{}", show(want), show(&got));
    }
    assert_eq!(whole.keys().collect::<Vec<_>>(), t.expected.keys().collect::<Vec<_>>(), "{name}: sessions with output");
    let bytewise = replay(&t, &mut |_| 1);
    assert_eq!(bytewise, whole, "{name}: byte-at-a-time output differs");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
    for _ in 0..5 {
        let random = replay(&t, &mut |left| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed as usize) % left.min(40)
        });
        assert_eq!(random, whole, "{name}: random-split output differs");
    }
}

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(concat!(stringify!($name), ".txt")); })*
    };
}

transcripts!(
    greeting_and_any_state,
    notify,
    savedate,
    urlauth,
    login_and_limits,
    authenticate,
    state_gating,
    literals,
    mailboxes,
    list,
    select_and_status,
    append,
    multiappend,
    catenate,
    compress,
    quota,
    replace,
    create_special_use,
    utf8_accept,
    metadata,
    qresync,
    preview,
    objectid,
    fetch,
    store_and_search,
    store_one_modseq,
    copy_move_expunge,
    two_devices,
    idle,
    imaptest_fixes,
    sort_thread
);
