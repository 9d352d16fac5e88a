//! Resynchronization on a 100k-message INBOX through the protocol core
//! (RFC 7162 3.2.5, 3.2.6): a client that was away while 10 messages got a
//! flag and 10 were expunged asks what changed, with SELECT's QRESYNC
//! parameter and with UID FETCH's CHANGEDSINCE and VANISHED. The answer is
//! 20 FETCH responses and one VANISHED (EARLIER); its cost must follow those
//! changes, not the 100k messages.

use criterion::{criterion_group, criterion_main, Criterion};
use ringmail::proto::Out;

mod common;
use common::{run, session};

/// The server's allocator, so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MESSAGES: u32 = 100_000;

/// The text after `key` up to the next `]`.
fn after<'a>(s: &'a str, key: &str) -> &'a str {
    s.split(key).nth(1).and_then(|r| r.split(']').next()).expect("response code")
}

fn resync(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, store) = session(dir.path(), 0, None);
    {
        let inbox = store.user("bench", common::NOW).unwrap().mailbox("INBOX").unwrap();
        let mut mb = inbox.borrow_mut();
        for i in 0..MESSAGES {
            mb.append_bytes(format!("Subject: {i}\r\n\r\n{i}\r\n").as_bytes(), 0, 0, common::NOW).unwrap();
        }
        mb.commit().unwrap();
        mb.checkpoint().unwrap();
    }
    let mut out = Out::new();
    let mut text = String::new();
    let mut say = |conn: &mut _, cmd: &str| {
        text.clear();
        run(conn, &store, cmd, &mut out, &mut |o| text.push_str(&String::from_utf8_lossy(&o.flatten())));
        text.clone()
    };
    say(&mut conn, "u UNSELECT\r\n");
    say(&mut conn, "e ENABLE QRESYNC\r\n");
    let sel = say(&mut conn, "s SELECT INBOX\r\n");
    let (uidvalidity, modseq) = (after(&sel, "[UIDVALIDITY ").to_string(), after(&sel, "[HIGHESTMODSEQ ").to_string());
    let flagged: Vec<String> = (1..=10).map(|k| (k * 9_000).to_string()).collect();
    let doomed: Vec<String> = (1..=10).map(|k| (k * 9_000 + 17).to_string()).collect();
    say(&mut conn, &format!("f UID STORE {} +FLAGS.SILENT (\\Seen)\r\n", flagged.join(",")));
    say(&mut conn, &format!("d UID STORE {} +FLAGS.SILENT (\\Deleted)\r\n", doomed.join(",")));
    say(&mut conn, &format!("x UID EXPUNGE {}\r\n", doomed.join(",")));
    let commands = [
        ("SELECT INBOX (QRESYNC (uidvalidity modseq))", format!("q SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))\r\n")),
        ("UID FETCH 1:* (FLAGS) (CHANGEDSINCE modseq VANISHED)", format!("v UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)\r\n")),
    ];
    for (name, cmd) in &commands {
        let r = say(&mut conn, cmd);
        let fetches = r.matches(" FETCH (").count();
        let vanished = r.lines().find(|l| l.starts_with("* VANISHED")).unwrap_or("none");
        println!("{name}: {fetches} FETCH responses, {vanished}");
        assert_eq!(fetches, 10, "{r}");
    }
    let mut g = c.benchmark_group("QRESYNC on 100k messages, 10 flagged and 10 expunged since");
    g.sample_size(20);
    for (name, cmd) in &commands {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut bytes = 0;
                run(&mut conn, &store, cmd, &mut out, &mut |o| bytes += o.len());
                bytes
            })
        });
    }
    g.finish();
}

criterion_group!(benches, resync);
criterion_main!(benches);
