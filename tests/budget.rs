//! Every command's output is produced in slices under the output budget,
//! and sequence sets are never expanded (the hardening issue: `FETCH
//! 1:*,1:*,...` built gigabytes; a whole FETCH 1:* response was built
//! before its first byte was sent; `4294967295` was refused).

use std::rc::Rc;
use std::sync::Arc;

use ringmail::config::SyncMode;
use ringmail::proto::Out;
use ringmail::session::driver::{self, Ended, Env};
use ringmail::session::{ConnFacts, Connection, SessionConfig};
use ringmail::store::{RealIo, Settings, Store};

const NOW: i64 = 1_700_000_000;
/// The budget a slice fills (session::OUTPUT_BUDGET), and one message's
/// response of slack (a slice ends after the message that filled it).
const BUDGET: usize = 256 * 1024;

struct Box1 {
    store: Store,
    conns: Vec<Connection>,
    _dir: tempfile::TempDir,
}

/// `n` small messages in INBOX, and `sessions` sessions with it selected.
fn mailbox(n: u32, sessions: usize) -> Box1 {
    // Real files: the in-memory file system copies a segment per mapping.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(Rc::new(RealIo::inline()), dir.path(), Settings { sync: SyncMode::Never, ..Settings::default() });
    let user = store.user("u", NOW).unwrap();
    {
        let inbox = user.mailbox("INBOX").unwrap();
        let mut mb = inbox.borrow_mut();
        for i in 0..n {
            mb.append_bytes(format!("Subject: m{i}\r\nFrom: a{i}@x.org\r\n\r\nbody {i}\r\n").as_bytes(), 0, 0, NOW).unwrap();
        }
        mb.commit().unwrap();
    }
    let mut conns = Vec::new();
    for _ in 0..sessions {
        let mut c =
            Connection::preauthenticated(Arc::new(SessionConfig::default()), ConnFacts { tls: false, cleartext_ok: true, compressed: false }, "u".into());
        c.attach(user.clone());
        conns.push(c);
    }
    let mut b = Box1 { store, conns, _dir: dir };
    for i in 0..sessions {
        let (r, _) = b.run(i, "s SELECT INBOX\r\n");
        assert!(r.0.ends_with("s OK [READ-WRITE] Select completed.\r\n"));
    }
    b
}

/// (whole output, size of every slice flushed before the end).
struct Ran(String, Vec<usize>);

impl Box1 {
    fn run(&mut self, i: usize, cmd: &str) -> (Ran, Ended) {
        let env = Env { store: &self.store, auth: None, now: NOW };
        let c = &mut self.conns[i];
        c.decoder().feed(cmd.as_bytes());
        let mut out = Out::new();
        let mut all = Vec::new();
        let mut slices = Vec::new();
        let ended = driver::run(c, &env, &mut out, &mut |o| {
            slices.push(o.len());
            all.extend_from_slice(&o.flatten());
            o.clear();
        });
        all.extend_from_slice(&out.flatten());
        (Ran(String::from_utf8(all).unwrap(), slices), ended)
    }
}

#[test]
fn fetch_of_a_large_mailbox_goes_out_in_slices() {
    let mut b = mailbox(30_000, 1);
    let (Ran(text, slices), ended) = b.run(0, "f FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)\r\n");
    assert_eq!(ended, Ended::Read);
    assert_eq!(text.matches(" FETCH (UID ").count(), 30_000);
    assert!(text.ends_with("f OK Fetch completed.\r\n"));
    assert!(slices.len() >= 10, "{} slices", slices.len());
    assert!(slices.iter().all(|&n| n < BUDGET + 4096), "{slices:?}");
}

#[test]
fn huge_sequence_sets_are_not_expanded() {
    let mut b = mailbox(50_000, 1);
    // About 16,000 ranges in one line, each naming every message.
    let set = vec!["1:*"; 16_000].join(",");
    let (Ran(text, _), _) = b.run(0, &format!("f FETCH {set} (UID)\r\n"));
    assert_eq!(text.matches(" FETCH (UID ").count(), 50_000, "every message once");
    let (Ran(text, _), _) = b.run(0, &format!("s UID SEARCH UID {set}\r\n"));
    assert!(text.starts_with("* SEARCH 1 2 3 "));
    let (Ran(text, _), _) = b.run(0, "c STORE 1:*,1:*,2:4 +FLAGS.SILENT (\\Seen)\r\n");
    assert!(text.ends_with("c OK Store completed.\r\n"), "{}", &text[..text.len().min(200)]);
}

/// RFC 9051 9: a sequence number is any non-zero 32-bit number.
#[test]
fn the_largest_uid_is_a_valid_number() {
    let mut b = mailbox(5, 1);
    let (Ran(text, _), _) = b.run(0, "a UID FETCH 4294967295 (UID)\r\n");
    assert_eq!(text, "a OK Fetch completed.\r\n");
    let (Ran(text, _), _) = b.run(0, "b UID SEARCH UID 3:4294967295\r\n");
    assert_eq!(text, "* SEARCH 3 4 5\r\nb OK Search completed.\r\n");
    let (Ran(text, _), _) = b.run(0, "c UID FETCH 4294967295:* (UID)\r\n");
    assert_eq!(text, "* 5 FETCH (UID 5)\r\nc OK Fetch completed.\r\n", "`*` names the last message");
    let (Ran(text, _), _) = b.run(0, "d FETCH 4294967295 (UID)\r\n");
    assert_eq!(text, "d BAD Invalid messageset\r\n", "no such sequence number");
    let (Ran(text, _), _) = b.run(0, "e UID FETCH 4294967296 (UID)\r\n");
    assert!(text.starts_with("e BAD"), "{text}");
}

/// Another session expunges 20,000 messages: the EXPUNGE responses reach
/// this one in slices, before its tagged OK.
#[test]
fn an_expunge_storm_is_reported_in_slices() {
    let mut b = mailbox(25_000, 2);
    let (Ran(text, _), _) = b.run(1, "a STORE 1:20000 +FLAGS.SILENT (\\Deleted)\r\n");
    assert!(text.ends_with("a OK Store completed.\r\n"));
    let (Ran(text, _), _) = b.run(1, "b EXPUNGE\r\n");
    assert!(text.ends_with("b OK Expunge completed.\r\n"));
    let (Ran(text, slices), _) = b.run(0, "n NOOP\r\n");
    assert_eq!(text.matches(" EXPUNGE\r\n").count(), 20_000);
    assert!(text.ends_with("n OK NOOP completed.\r\n"));
    assert!(!slices.is_empty() && slices.iter().all(|&n| n < BUDGET + 64), "{slices:?}");
    let (Ran(text, _), _) = b.run(0, "f FETCH 5000 (UID)\r\n");
    assert_eq!(text, "* 5000 FETCH (UID 25000)\r\nf OK Fetch completed.\r\n");
}

/// SEARCH over much mail stops between slices of work, not only of output.
#[test]
fn a_long_search_yields_between_slices() {
    let mut b = mailbox(40_000, 1);
    let (Ran(text, slices), _) = b.run(0, "s SEARCH BODY \"nowhere-to-be-found\"\r\n");
    assert_eq!(text, "* SEARCH\r\ns OK Search completed.\r\n");
    assert!(slices.len() >= 2, "evaluated in slices: {slices:?}");
}

#[test]
fn list_of_many_mailboxes_goes_out_in_slices() {
    let mut b = mailbox(1, 1);
    let user = b.store.user("u", NOW).unwrap();
    let long = "x".repeat(200);
    for i in 0..3000 {
        user.create(&format!("Folders/{long}{i:04}"), None, NOW).unwrap();
    }
    let (Ran(text, slices), ended) = b.run(0, "l LIST \"\" \"*\" RETURN (STATUS (MESSAGES))\r\n");
    assert_eq!(ended, Ended::Read);
    assert_eq!(text.matches("* LIST (\\HasNoChildren) \"/\" Folders/").count(), 3000);
    assert_eq!(text.matches("* STATUS Folders/").count(), 3000);
    assert!(text.contains("* LIST (\\HasChildren) \"/\" Folders\r\n"), "the parent, found by its children");
    assert!(text.ends_with("l OK List completed.\r\n"));
    assert!(slices.len() >= 3, "{slices:?}");
    assert!(slices.iter().all(|&n| n < BUDGET + 4096), "{slices:?}");
    let (Ran(text, _), _) = b.run(0, "s LSUB \"\" \"*\"\r\n");
    assert!(text.ends_with("s OK Lsub completed.\r\n") && !text.contains("Folders/"), "{text}");
}
