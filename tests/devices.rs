//! Many devices on one mailbox (RFC 9051 5.2): one in IDLE (RFC 2177), one
//! registered with NOTIFY (RFC 5465) and one offline that comes back with
//! QRESYNC (RFC 7162) each learn of a burst of APPEND, STORE, EXPUNGE and
//! MOVE made by a fourth, and all end with the state the server has. The
//! IDLE and NOTIFY devices must hear everything without asking.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Client, TestServer};
use ringmail::config::Driver;

/// UID -> flags (sorted, without \Recent).
type State = BTreeMap<u32, Vec<String>>;

fn number_after(line: &str, key: &str) -> Option<u32> {
    let at = line.find(key)? + key.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn flags_in(line: &str) -> Option<Vec<String>> {
    let at = line.find("FLAGS (")? + "FLAGS (".len();
    let end = at + line[at..].find(')')?;
    let mut v: Vec<String> = line[at..end].split_whitespace().filter(|f| *f != "\\Recent").map(str::to_string).collect();
    v.sort();
    Some(v)
}

/// `1:3,7` -> [1, 2, 3, 7].
fn uid_set(s: &str) -> Vec<u32> {
    s.split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once(':').unwrap_or((r, r));
            let (a, b): (u32, u32) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            a.min(b)..=a.max(b)
        })
        .collect()
}

/// A device that knows its mailbox by sequence number, as a client
/// without QRESYNC must: (UID, flags) per message, None until told.
#[derive(Default)]
struct Numbered(Vec<(Option<u32>, Option<Vec<String>>)>);

impl Numbered {
    fn apply(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("* ") else { return };
        let mut words = rest.split_whitespace();
        let (Some(n), Some(what)) = (words.next().and_then(|w| w.parse::<usize>().ok()), words.next()) else { return };
        match what {
            "EXISTS" => self.0.resize(n, (None, None)),
            "EXPUNGE" => {
                self.0.remove(n - 1);
            }
            "FETCH" => {
                let m = &mut self.0[n - 1];
                if let Some(u) = number_after(line, "UID ") {
                    m.0 = Some(u);
                }
                if let Some(f) = flags_in(line) {
                    m.1 = Some(f);
                }
            }
            _ => {}
        }
    }

    fn state(&self) -> State {
        self.0.iter().map(|(u, f)| (u.expect("every UID known"), f.clone().expect("every flag known"))).collect()
    }
}

/// UID -> flags of every message, as the server has them.
fn fetch_all(c: &mut Client, tag: &str) -> State {
    let r = c.cmd(tag, "UID FETCH 1:* (FLAGS)");
    assert!(r.last().unwrap().starts_with(&format!("{tag} OK")), "{r:?}");
    r.iter().filter(|l| l.contains(" FETCH ")).map(|l| (number_after(l, "UID ").unwrap(), flags_in(l).unwrap())).collect()
}

fn append(c: &mut Client, tag: &str, mailbox: &str, i: u32) {
    let body = format!("Subject: {i}\r\n\r\n{i}");
    let r = c.cmd(tag, &format!("APPEND {mailbox} {{{}+}}\r\n{body}", body.len()));
    assert!(r.last().unwrap().contains("OK [APPENDUID"), "{r:?}");
}

fn three_devices_agree(driver: Driver) {
    let t = TestServer::start(driver, |_| {});
    let mut writer = t.client();
    writer.login("bob", "pw");
    for i in 0..6 {
        append(&mut writer, &format!("p{i}"), "INBOX", i);
    }
    writer.cmd("s", "STORE 2 +FLAGS (\\Seen)");

    // The offline device syncs once and leaves.
    let mut offline = t.client();
    offline.login("bob", "pw");
    offline.cmd("e", "ENABLE QRESYNC");
    let sel = offline.cmd("s", "SELECT INBOX");
    let uidvalidity = sel.iter().find_map(|l| number_after(l, "[UIDVALIDITY ")).unwrap();
    let modseq = sel.iter().find_map(|l| l.find("[HIGHESTMODSEQ ").map(|i| l[i + 15..].split(']').next().unwrap().parse::<u64>().unwrap())).unwrap();
    let mut known = fetch_all(&mut offline, "f");
    offline.cmd("o", "LOGOUT");

    let mut idler = t.client();
    idler.login("bob", "pw");
    let mut idle_view = Numbered::default();
    for l in idler.cmd("s", "SELECT INBOX").into_iter().chain(idler.cmd("f", "FETCH 1:* (UID FLAGS)")) {
        idle_view.apply(&l);
    }
    idler.send("i IDLE");
    assert_eq!(idler.line(), "+ idling\r\n");

    let mut notified = t.client();
    notified.login("bob", "pw");
    let mut notify_view = Numbered::default();
    for l in notified.cmd("s", "SELECT INBOX").into_iter().chain(notified.cmd("f", "FETCH 1:* (UID FLAGS)")) {
        notify_view.apply(&l);
    }
    let r = notified.cmd("n", "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge))");
    assert_eq!(r.last().unwrap(), "n OK NOTIFY completed.\r\n");

    // The burst.
    writer.cmd("s2", "SELECT INBOX");
    for i in 6..9 {
        append(&mut writer, &format!("a{i}"), "INBOX", i);
    }
    writer.cmd("b1", "STORE 1,3 +FLAGS (\\Flagged $Work)");
    writer.cmd("b2", "UID STORE 2 -FLAGS (\\Seen)");
    writer.cmd("b3", "STORE 4 +FLAGS.SILENT (\\Deleted)");
    writer.cmd("b4", "EXPUNGE");
    writer.cmd("b5", "UID MOVE 5 Archive");
    writer.cmd("b6", "STORE 7 +FLAGS (\\Answered)");
    append(&mut writer, "a9", "INBOX", 9);
    let server = fetch_all(&mut writer, "t");
    let archive = writer.cmd("st", "STATUS Archive (MESSAGES)");
    assert!(archive[0].contains("MESSAGES 1"), "{archive:?}");

    // IDLE heard everything unasked; it fetches only what it has no UID for.
    for l in idler.unsolicited(Duration::from_millis(400)) {
        idle_view.apply(&l);
    }
    idler.send("DONE");
    assert_eq!(idler.until("i"), vec!["i OK Idle completed.\r\n".to_string()]);
    let first_new = idle_view.0.iter().position(|(u, _)| u.is_none()).expect("new messages") + 1;
    for l in idler.cmd("g", &format!("FETCH {first_new}:* (UID FLAGS)")) {
        idle_view.apply(&l);
    }
    assert_eq!(idle_view.state(), server, "the IDLE device");

    // NOTIFY heard everything between commands, new messages with the FETCH
    // items it asked for, and the other mailbox's arrival as STATUS.
    let heard = notified.unsolicited(Duration::from_millis(400));
    for l in &heard {
        notify_view.apply(l);
    }
    assert!(heard.iter().any(|l| l.starts_with("* STATUS Archive (MESSAGES 1 ")), "{heard:?}");
    assert_eq!(notify_view.state(), server, "the NOTIFY device");
    assert_eq!(notified.cmd("z", "NOOP"), vec!["z OK NOOP completed.\r\n".to_string()], "nothing was left to tell");

    // The offline device resynchronizes with QRESYNC (RFC 7162 3.2.5).
    let mut back = t.client();
    back.login("bob", "pw");
    back.cmd("e", "ENABLE QRESYNC");
    let uids: Vec<String> = known.keys().map(u32::to_string).collect();
    let last_known = *known.keys().last().unwrap();
    let r = back.cmd("s", &format!("SELECT INBOX (QRESYNC ({uidvalidity} {modseq} {}))", uids.join(",")));
    assert!(r.last().unwrap().starts_with("s OK"), "{r:?}");
    for l in &r {
        if let Some(set) = l.strip_prefix("* VANISHED (EARLIER) ") {
            for u in uid_set(set.trim_end()) {
                known.remove(&u);
            }
        } else if l.contains(" FETCH ") {
            known.insert(number_after(l, "UID ").unwrap(), flags_in(l).unwrap());
        }
    }
    // The known UIDs limit the answer to them (3.2.5.1); new ones by UID.
    for l in back.cmd("n", &format!("UID FETCH {}:* (FLAGS)", last_known + 1)) {
        if l.contains(" FETCH ") {
            known.insert(number_after(&l, "UID ").unwrap(), flags_in(&l).unwrap());
        }
    }
    assert_eq!(known, server, "the device back with QRESYNC");
}

both_drivers! {
    three_devices => three_devices_agree;
}
