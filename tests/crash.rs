//! Durability against a real crash: a ringmail process takes APPENDs (IMAP)
//! and deliveries (LMTP) from several connections and is killed with SIGKILL
//! at a random moment. After a restart on the same data directory, every
//! message whose APPEND got OK or whose delivery got 250 must be there, byte
//! for byte, exactly once.
//!
//! `RINGMAIL_CRASH_ROUNDS` raises the number of rounds for a longer run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{serve_process, Client};

fn message(round: u32, writer: usize, n: usize) -> String {
    let body: String = (0..(n * 37 % 400)).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    format!("Message-ID: <r{round}w{writer}n{n}@crash>\r\nSubject: round {round} writer {writer} number {n}\r\n\r\n{body}\r\n")
}

/// Appends until the connection breaks; returns the messages acknowledged.
fn writer(addr: SocketAddr, round: u32, id: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let Ok(s) = TcpStream::connect(addr) else { return };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let send = |w: &mut TcpStream, b: &[u8]| w.write_all(b).is_ok();
    if r.read_line(&mut line).unwrap_or(0) == 0 || !send(&mut w, b"l LOGIN joe secret\r\n") {
        return;
    }
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.starts_with("l ") {
            break;
        }
    }
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let m = message(round, id, n);
        let cmd = format!("a{n} APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len());
        if !send(&mut w, cmd.as_bytes()) {
            return;
        }
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.starts_with(&format!("a{n} ")) {
                if line.starts_with(&format!("a{n} OK")) {
                    acked.lock().unwrap().push(m.clone());
                }
                break;
            }
        }
        n += 1;
    }
}

/// Delivers over LMTP until the connection breaks; records each message
/// that got 250, as it will be stored (with the trace headers).
fn deliverer(addr: SocketAddr, round: u32, id: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let Ok(s) = TcpStream::connect(addr) else { return };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let reply = |r: &mut BufReader<TcpStream>| -> Option<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    };
    if reply(&mut r).is_none() || w.write_all(b"LHLO crash\r\n").is_err() || reply(&mut r).is_none() {
        return;
    }
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let m = message(round, id, n);
        // Pipelined (RFC 2920): the envelope and DATA in one write.
        if w.write_all(b"MAIL FROM:<c@crash>\r\nRCPT TO:<joe>\r\nDATA\r\n").is_err() {
            return;
        }
        for want in ["250", "250", "354"] {
            match reply(&mut r) {
                Some(l) if l.starts_with(want) => {}
                _ => return,
            }
        }
        if w.write_all(format!("{m}.\r\n").as_bytes()).is_err() {
            return;
        }
        match reply(&mut r) {
            Some(l) if l.starts_with("250") => acked.lock().unwrap().push(format!("Return-Path: <c@crash>\r\nDelivered-To: joe\r\n{m}")),
            _ => return,
        }
        n += 1;
    }
}

/// Every message in INBOX, by Message-ID.
fn inbox(addr: SocketAddr) -> Vec<String> {
    let mut c = Client::connect(addr);
    c.login("joe", "secret");
    let sel = c.cmd("s", "EXAMINE INBOX");
    assert!(sel.last().unwrap().starts_with("s OK"), "{sel:?}");
    let r = c.cmd("f", "FETCH 1:* BODY.PEEK[]");
    if r.last().unwrap().contains("BAD Invalid messageset") {
        return Vec::new();
    }
    assert!(r.last().unwrap().starts_with("f OK"), "{:?}", r.last());
    r.iter()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH "))
        .map(|l| {
            let start = l.find("}\r\n").expect("literal") + 3;
            let end = l.rfind(")\r\n").expect("end of FETCH");
            l[start..end].to_string()
        })
        .collect()
}

#[test]
fn sigkill_under_append_and_lmtp_load_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("RINGMAIL_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "joe:{PLAIN}secret\n").unwrap();
    let mut all_acked: Vec<String> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..rounds {
        let mut server = serve_process(dir.path());
        // What survived so far must still be there after every restart.
        let present: std::collections::HashSet<String> = inbox(server.imap).into_iter().collect();
        for m in &all_acked {
            assert!(present.contains(m), "round {round}: an acknowledged message is missing after restart:\n{m}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..8)
            .map(|id| {
                let (stop, acked) = (stop.clone(), acked.clone());
                let (imap, lmtp) = (server.imap, server.lmtp);
                std::thread::spawn(move || if id % 2 == 0 { writer(imap, round, id, stop, acked) } else { deliverer(lmtp, round, id, stop, acked) })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rnd() % 400));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(round > 0 || !acked.is_empty(), "the first round acknowledged nothing: the test is not testing");
        all_acked.extend(acked);
    }
    let server = serve_process(dir.path());
    let present = inbox(server.imap);
    let set: std::collections::HashSet<&String> = present.iter().collect();
    for m in &all_acked {
        assert!(set.contains(m), "an acknowledged message is missing after the last restart:\n{m}");
    }
    // Nothing is present twice, and nothing is present that no writer sent.
    let mut seen = std::collections::HashSet::new();
    for m in &present {
        assert!(seen.insert(m.clone()), "a message is stored twice:\n{m}");
        assert!(m.starts_with("Message-ID: <r") || m.starts_with("Return-Path: <c@crash>\r\nDelivered-To: joe\r\nMessage-ID: <r"), "unexpected message:\n{m}");
    }
    let mut s = server;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let delivered = all_acked.iter().filter(|m| m.starts_with("Return-Path")).count();
    assert!(delivered > 0 && delivered < all_acked.len(), "both APPEND and LMTP must have been acknowledged: {delivered} of {}", all_acked.len());
    eprintln!("{rounds} SIGKILL rounds: {} acknowledged ({delivered} by LMTP), all present exactly once ({} messages stored)", all_acked.len(), present.len());
}

/// QRESYNC across a crash (RFC 7162 3.2.5.1): the expunges since the last
/// checkpoint come back from the change log, so a client that synced
/// before them hears exactly those, not every UID missing from its range
/// (the RFC 7162 5.1 fallback would also name UID 1, expunged before it
/// synced).
#[test]
fn qresync_after_sigkill_names_only_the_expunges_since_the_clients_modseq() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "joe:{PLAIN}secret\n").unwrap();
    let mut server = serve_process(dir.path());
    let mut c = Client::connect(server.imap);
    c.login("joe", "secret");
    for n in 1..=6 {
        let m = format!("Subject: {n}\r\n\r\n{n}\r\n");
        let r = c.cmd(&format!("a{n}"), &format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()));
        assert!(r.last().unwrap().contains("OK"), "{r:?}");
    }
    c.cmd("e", "ENABLE QRESYNC");
    let sel = c.cmd("s", "SELECT INBOX");
    let uidvalidity = sel.iter().find_map(|l| l.split("[UIDVALIDITY ").nth(1)).and_then(|r| r.split(']').next()).unwrap().to_string();
    c.cmd("d1", "UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    c.cmd("x1", "EXPUNGE");
    let r = c.cmd("n", "NOOP");
    assert!(r.last().unwrap().starts_with("n OK"));
    let st = c.cmd("st", "STATUS INBOX (HIGHESTMODSEQ)");
    let modseq = st[0].split("HIGHESTMODSEQ ").nth(1).unwrap().trim_end_matches(|ch: char| !ch.is_ascii_digit()).to_string();
    c.cmd("d2", "UID STORE 3,5 +FLAGS.SILENT (\\Deleted)");
    let x = c.cmd("x2", "EXPUNGE");
    assert!(x.iter().any(|l| l == "* VANISHED 3,5\r\n"), "{x:?}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = serve_process(dir.path());
    let mut c = Client::connect(server.imap);
    c.login("joe", "secret");
    c.cmd("e", "ENABLE QRESYNC");
    let r = c.cmd("q", &format!("SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:6))"));
    assert!(r.last().unwrap().starts_with("q OK"), "{r:?}");
    let vanished: Vec<&String> = r.iter().filter(|l| l.starts_with("* VANISHED")).collect();
    assert_eq!(vanished, ["* VANISHED (EARLIER) 3,5\r\n"], "{r:?}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
