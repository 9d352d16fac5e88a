//! `ringmail user move` between two backends (separate processes on
//! loopback addresses of their own): a move under delivery and sessions
//! loses and duplicates nothing and keeps UIDVALIDITY, UIDs, flags and
//! modseqs; a move interrupted at every step (the mover, the old home or
//! the new one killed with SIGKILL) leaves the user served by exactly one
//! backend, with all acknowledged mail.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{serve_process_with, Client, ServeProcess};

const SECRET: &str = "a-secret-every-backend-shares-0123";

/// Two backends on 127.0.0.{ip}, {ip+1}; their data directories, the map
/// and the secret in one temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    ips: [String; 2],
    procs: [Option<ServeProcess>; 2],
}

const NAMES: [&str; 2] = ["b1", "b2"];

impl Cluster {
    fn new(first_ip: u8) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ips = [format!("127.0.0.{first_ip}"), format!("127.0.0.{}", first_ip + 1)];
        let mut map = String::new();
        for (n, ip) in NAMES.iter().zip(&ips) {
            map.push_str(&format!("[[backend]]\nname = \"{n}\"\nimap = \"{ip}:1143\"\nlmtp = \"{ip}:2424\"\ncontrol = \"{ip}:4190\"\n"));
            let data = dir.path().join(n);
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("users"), "ann:{PLAIN}pw\njoe:{PLAIN}secret\n").unwrap();
        }
        std::fs::write(dir.path().join("cluster.toml"), map).unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        let mut c = Cluster { dir, ips, procs: [None, None] };
        c.start(0);
        c.start(1);
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&mut self, i: usize) {
        let (imap, imaps, lmtp) = (format!("{}:1143", self.ips[i]), format!("{}:1993", self.ips[i]), format!("{}:2424", self.ips[i]));
        let map = self.path("cluster.toml");
        let secret = self.path("secret");
        let pop3 = format!("{}:0", self.ips[i]);
        let args = [
            "--pop3",
            &pop3,
            "--pop3s",
            &pop3,
            "--imap",
            &imap,
            "--imaps",
            &imaps,
            "--lmtp",
            &lmtp,
            "--cluster",
            map.to_str().unwrap(),
            "--cluster-self",
            NAMES[i],
            "--cluster-secret",
            secret.to_str().unwrap(),
        ];
        self.procs[i] = Some(serve_process_with(&self.path(NAMES[i]), &args));
    }

    /// SIGKILL, then started again on the same data.
    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
    }

    fn imap(&self, i: usize) -> SocketAddr {
        format!("{}:1143", self.ips[i]).parse().unwrap()
    }

    fn lmtp(&self, i: usize) -> SocketAddr {
        format!("{}:2424", self.ips[i]).parse().unwrap()
    }

    /// Which backend the hash gives `user`.
    fn hashed_home(&self, user: &str) -> usize {
        let map = ringmail::cluster::ClusterMap::load(&self.path("cluster.toml")).unwrap();
        NAMES.iter().position(|n| *n == map.home(user).name).unwrap()
    }

    /// `ringmail user move`, with extra arguments.
    fn mover(&self, user: &str, to: usize, extra: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ringmail"))
            .args(["user", "move", user, "--to", NAMES[to], "--quiet", "--cluster"])
            .arg(self.path("cluster.toml"))
            .arg("--cluster-secret")
            .arg(self.path("secret"))
            .args(extra)
            .output()
            .unwrap()
    }

    /// The backends that let `user` log in now.
    fn serving(&self, user: &str) -> Vec<usize> {
        (0..2).filter(|&i| self.procs[i].is_some() && login(self.imap(i), user).is_some()).collect()
    }

    /// Waits (10 s at most) until exactly backend `i` serves `user`.
    fn served_only_by(&self, user: &str, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.serving(user);
            if s == [i] {
                return;
            }
            assert!(Instant::now() < deadline, "{user} should be served by {} alone, is by {s:?}", NAMES[i]);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill(0);
        self.kill(1);
    }
}

fn login(addr: SocketAddr, user: &str) -> Option<Client> {
    let mut c = Client::connect(addr);
    c.line();
    let r = c.cmd("L", &format!("LOGIN {user} pw"));
    r.last().unwrap().starts_with("L OK").then_some(c)
}

/// One LMTP transaction for `ann`; the reply to DATA.
fn deliver(addr: SocketAddr, subject: &str) -> String {
    let mut c = Client::connect(addr);
    c.line();
    c.send("LHLO test");
    while c.line().starts_with("250-") {}
    c.send("MAIL FROM:<sender@example.org>");
    c.line();
    c.send("RCPT TO:<ann@example.com>");
    let l = c.line();
    if !l.starts_with("250") {
        return l;
    }
    c.send("DATA");
    c.line();
    c.send(&format!("Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nbody of {subject}\r\n."));
    c.line()
}

/// UID to (FLAGS, MODSEQ) of INBOX, with UIDVALIDITY and HIGHESTMODSEQ.
fn state(c: &mut Client) -> (String, u64, BTreeMap<u32, String>) {
    c.cmd("E", "ENABLE CONDSTORE");
    let sel = c.cmd("S", "EXAMINE INBOX (CONDSTORE)");
    let find = |key: &str| sel.iter().find_map(|l| l.split(&format!("[{key} ")).nth(1).map(|r| r.split(']').next().unwrap().to_string())).unwrap();
    let (uidvalidity, hms) = (find("UIDVALIDITY"), find("HIGHESTMODSEQ").parse().unwrap());
    let mut msgs = BTreeMap::new();
    for l in c.cmd("F", "UID FETCH 1:* (FLAGS MODSEQ)") {
        if let Some(uid) = l.split("UID ").nth(1).and_then(|r| r.split([' ', ')']).next()).and_then(|u| u.parse().ok()) {
            let flags = l.split("FLAGS (").nth(1).unwrap().split(')').next().unwrap().to_string();
            let modseq = l.split("MODSEQ (").nth(1).unwrap().split(')').next().unwrap().to_string();
            msgs.insert(uid, format!("{flags} {modseq}"));
        }
    }
    (uidvalidity, hms, msgs)
}

/// Every subject in INBOX, counted.
fn subjects(c: &mut Client) -> BTreeMap<String, usize> {
    c.cmd("S", "EXAMINE INBOX");
    let mut out = BTreeMap::new();
    for l in c.cmd("F", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])") {
        if let Some(s) = l.split("Subject: ").nth(1) {
            *out.entry(s.split('\r').next().unwrap().to_string()).or_default() += 1;
        }
    }
    out
}

fn ok(out: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ringmail user move failed: {text}");
    text
}

/// Delivers to `addr` until `stop`, each message retried on a temporary
/// failure as an MTA would (to the same backend, which passes mail on to
/// the user's home); the subjects acknowledged with 250.
fn delivering(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0.. {
            let subject = format!("live{i}");
            loop {
                let r = deliver(addr, &subject);
                if r.starts_with("250") {
                    acked.push(subject);
                    break;
                }
                assert!(r.starts_with('4'), "only temporary failures: {r}");
                std::thread::sleep(Duration::from_millis(50));
            }
            if stop.load(Ordering::Relaxed) {
                return acked;
            }
        }
        unreachable!()
    })
}

/// APPENDs `ann`'s messages until `stop`, to whichever backend lets her
/// log in (as a client behind nginx would reconnect); the subjects
/// answered OK.
fn appending(cl: [SocketAddr; 2], stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut ok = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let Some(mut c) = cl.iter().find_map(|&a| login(a, "ann")) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            while !stop.load(Ordering::Relaxed) {
                let msg = format!("Subject: appended{i}\r\n\r\nx\r\n");
                c.send(&format!("A APPEND INBOX {{{}+}}", msg.len()));
                c.send_raw(msg.as_bytes());
                c.send("");
                let mut last = c.line();
                while last.starts_with('*') && !last.starts_with("* BYE") {
                    last = c.line();
                }
                if last.starts_with("A OK") {
                    ok.push(format!("appended{i}"));
                    i += 1;
                } else {
                    // NO [UNAVAILABLE] or BYE while held: not stored; again
                    // on a new connection.
                    assert!(last.contains("UNAVAILABLE") || last.is_empty(), "{last}");
                    break;
                }
            }
        }
        ok
    })
}

#[test]
fn a_user_moves_under_delivery_and_sessions_and_loses_nothing() {
    let mut cl = Cluster::new(41);
    let (src, dst) = (cl.hashed_home("ann"), 1 - cl.hashed_home("ann"));
    for i in 0..150 {
        assert!(deliver(cl.lmtp(src), &format!("before{i}")).starts_with("250"));
    }
    let mut c = login(cl.imap(src), "ann").unwrap();
    c.cmd("S", "SELECT INBOX");
    c.cmd("T", "STORE 1:20 +FLAGS (\\Flagged $Work)");
    c.cmd("T", "STORE 5 +FLAGS (\\Deleted)");
    c.cmd("X", "EXPUNGE");
    c.cmd("C", "CREATE Lists/rust");
    c.cmd("A", "COPY 1:10 Lists/rust");
    let before = state(&mut c);
    // A session waiting in IDLE, and mail arriving throughout.
    let mut idle = login(cl.imap(src), "ann").unwrap();
    idle.cmd("S", "SELECT INBOX");
    idle.send("I IDLE");
    assert!(idle.line().starts_with('+'));
    let stop = Arc::new(AtomicBool::new(false));
    let live = delivering(cl.lmtp(src), stop.clone());
    let appends = appending([cl.imap(src), cl.imap(dst)], stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let out = ok(&cl.mover("ann", dst, &["--lease", "30"]));
    assert!(out.contains(&format!("from {} to {}", NAMES[src], NAMES[dst])), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked = live.join().unwrap();
    assert!(acked.len() > 2, "mail was delivered during the move: {acked:?}");
    let appended = appends.join().unwrap();
    assert!(appended.len() > 2, "mail was appended during the move: {appended:?}");
    // The session heard why it ends.
    let bye = idle.unsolicited(Duration::from_secs(2));
    assert!(bye.iter().any(|l| l.starts_with("* BYE [UNAVAILABLE]")), "{bye:?}");
    // Served by the new backend alone, with every message once and the
    // same UIDVALIDITY, UIDs, flags and modseqs.
    assert_eq!(cl.serving("ann"), [dst]);
    let mut c = login(cl.imap(dst), "ann").unwrap();
    let after = state(&mut c);
    assert_eq!(after.0, before.0, "UIDVALIDITY");
    assert!(after.1 >= before.1, "HIGHESTMODSEQ never goes back");
    for (uid, fm) in &before.2 {
        assert_eq!(after.2.get(uid), Some(fm), "UID {uid}: flags and modseq kept");
    }
    let got = subjects(&mut c);
    for i in (0..150).filter(|&i| i != 4) {
        assert_eq!(got.get(&format!("before{i}")), Some(&1), "before{i}");
    }
    for s in acked.iter().chain(&appended) {
        assert_eq!(got.get(s), Some(&1), "{s} was acknowledged: it is there once");
    }
    let stray = got.keys().filter(|s| s.starts_with("appended") && !appended.contains(s)).count();
    assert!(stray <= 1, "at most the APPEND cut off by the BYE, unanswered, may have been stored");
    let r = c.cmd("L", "STATUS Lists/rust (MESSAGES)");
    assert!(r[0].contains("MESSAGES 10"), "{r:?}");
    // CONDSTORE: nothing changed since the old HIGHESTMODSEQ but the new mail.
    c.cmd("S", "SELECT INBOX");
    let changed = c.cmd("F", &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {})", before.1));
    assert_eq!(changed.len() - 1, after.2.len() - before.2.len(), "{changed:?}");
    // QRESYNC (RFC 7162 3.2.5.1): a client that knew the mailbox before the
    // move hears only of what came since, as from the old home.
    c.cmd("U", "UNSELECT");
    c.cmd("Q", "ENABLE QRESYNC");
    let top = *before.2.keys().last().unwrap();
    let r = c.cmd("S", &format!("SELECT INBOX (QRESYNC ({} {} 1:{top}))", before.0, before.1));
    assert!(r.last().unwrap().starts_with("S OK"), "{r:?}");
    let uid_of = |l: &str| l.split("UID ").nth(1).and_then(|r| r.split([' ', ')']).next()).and_then(|u| u.parse::<u32>().ok());
    let fetched: Vec<u32> = r.iter().filter(|l| l.contains(" FETCH ")).filter_map(|l| uid_of(l)).collect();
    assert!(fetched.iter().all(|&u| u > top), "only the new mail: {fetched:?}");
    assert!(!r.iter().any(|l| l.starts_with("* VANISHED")), "nothing the client knew went: {r:?}");
    // The old home passes her mail on and keeps no copy.
    assert!(deliver(cl.lmtp(src), "after").starts_with("250"));
    assert_eq!(subjects(&mut c).get("after"), Some(&1));
    assert!(!cl.path(NAMES[src]).join("mail/ann").exists(), "the old copy is discarded");
    // Moved back, the other way.
    ok(&cl.mover("ann", src, &[]));
    cl.served_only_by("ann", src);
    let mut c = login(cl.imap(src), "ann").unwrap();
    assert_eq!(state(&mut c).0, before.0);
    cl.kill(dst);
}

#[test]
fn an_interrupted_move_leaves_the_user_on_exactly_one_backend() {
    let mut cl = Cluster::new(43);
    let (src, dst) = (cl.hashed_home("ann"), 1 - cl.hashed_home("ann"));
    for i in 0..40 {
        assert!(deliver(cl.lmtp(src), &format!("m{i}")).starts_with("250"));
    }
    let mail = |cl: &Cluster, i: usize| subjects(&mut login(cl.imap(i), "ann").unwrap());
    let expected = mail(&cl, src);
    // The mover dies before the commit: the hold's lease ends, the old home
    // serves again.
    for step in ["copied", "held", "sealed"] {
        let out = cl.mover("ann", dst, &["--lease", "2", "--crash-at", step]);
        assert!(!out.status.success(), "{step}");
        cl.served_only_by("ann", src);
        assert_eq!(mail(&cl, src), expected, "{step}");
    }
    // The old home dies (SIGKILL) while holding: back up, it serves.
    assert!(!cl.mover("ann", dst, &["--lease", "60", "--crash-at", "held"]).status.success());
    cl.kill(src);
    cl.start(src);
    cl.served_only_by("ann", src);
    // The new home dies while receiving: the move fails, nothing changes.
    let mover = {
        let (map, secret) = (cl.path("cluster.toml"), cl.path("secret"));
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_ringmail"))
                .args(["user", "move", "ann", "--to", NAMES[dst], "--quiet", "--cluster"])
                .arg(map)
                .arg("--cluster-secret")
                .arg(secret)
                .output()
                .unwrap()
        })
    };
    cl.kill(dst);
    let _ = mover.join().unwrap();
    cl.start(dst);
    cl.served_only_by("ann", src);
    // The mover dies right after the old home committed: the new home
    // learns the move from it, even after a SIGKILL of its own.
    assert!(!cl.mover("ann", dst, &["--crash-at", "committed"]).status.success());
    cl.kill(dst);
    cl.start(dst);
    cl.served_only_by("ann", dst);
    assert_eq!(mail(&cl, dst), expected);
    // A delivery to the old home reaches her.
    assert!(deliver(cl.lmtp(src), "later").starts_with("250"));
    assert_eq!(mail(&cl, dst).get("later"), Some(&1));
}

#[test]
fn the_control_port_wants_the_cluster_secret() {
    let cl = Cluster::new(45);
    let map = ringmail::cluster::ClusterMap::load(&cl.path("cluster.toml")).unwrap();
    let addr = map.backend("b1").unwrap().control.unwrap();
    let wrong = ringmail::migrate::control_port::ControlClient::connect(addr, b"not-the-secret-at-all", Duration::from_secs(2));
    assert!(wrong.is_err());
    let mut right = ringmail::migrate::control_port::ControlClient::connect(addr, SECRET.as_bytes(), Duration::from_secs(2)).unwrap();
    let (r, _) = right.call(ringmail::migrate::relocate::MoveOp::Where { user: "ann".into() }, &[]).unwrap();
    assert!(matches!(r, ringmail::migrate::relocate::MoveReply::Home(h) if h == map.home("ann").name));
    // One move of a user at a time; reads belong to it, and stay inside
    // the user's store.
    use ringmail::migrate::relocate::{MoveOp, MoveReply};
    let home = map.backend(&map.home("ann").name).unwrap().control.unwrap();
    let mut c = ringmail::migrate::control_port::ControlClient::connect(home, SECRET.as_bytes(), Duration::from_secs(2)).unwrap();
    let claim = |c: &mut ringmail::migrate::control_port::ControlClient| c.call(MoveOp::Claim { user: "ann".into(), lease_ms: 60_000 }, &[]);
    let Ok((MoveReply::Claimed(id), _)) = claim(&mut c) else { panic!() };
    let second = claim(&mut c);
    assert!(second.as_ref().is_err_and(|e| e.contains("already under way")), "{second:?}");
    let read = |c: &mut ringmail::migrate::control_port::ControlClient, id, path: &str| {
        c.call(MoveOp::Read { user: "ann".into(), id, path: path.into(), offset: 0, len: 10 }, &[])
    };
    assert!(read(&mut c, id + 1, "mailboxes").is_err(), "another move's id");
    assert!(read(&mut c, id, "../users").is_err(), "outside the store");
    c.call(MoveOp::Release { user: "ann".into(), id }, &[]).unwrap();
    assert!(claim(&mut c).is_ok(), "released: a new move may start");
    // The other backend takes staged files only for the move it receives.
    let other = map.backends().iter().find(|b| b.control != Some(home)).unwrap();
    let mut o = ringmail::migrate::control_port::ControlClient::connect(other.control.unwrap(), SECRET.as_bytes(), Duration::from_secs(2)).unwrap();
    let stage = MoveOp::Stage { user: "ann".into(), id: 5, path: "x".into(), offset: 0, zeros: 0 };
    assert!(o.call(stage.clone(), &[b"x".to_vec()]).is_err(), "not receiving");
    o.call(MoveOp::Receive { user: "ann".into(), id: 5 }, &[]).unwrap();
    o.call(stage, &[b"x".to_vec()]).unwrap();
    assert!(o.call(MoveOp::Seal { user: "ann".into(), id: 6 }, &[]).is_err(), "another move");
    // Unsealed: the move to it is not taken (it would serve an empty store).
    let commit = MoveOp::Commit { user: "ann".into(), moved: ringmail::cluster::Moved { backend: other.name.clone(), version: 1, id: 5 } };
    assert!(o.call(commit, &[]).is_err());
    assert!(matches!(o.call(MoveOp::Where { user: "ann".into() }, &[]).unwrap().0, MoveReply::Home(h) if h != other.name));
}
