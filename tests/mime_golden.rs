//! ENVELOPE, BODY and BODYSTRUCTURE of a corpus of real-world shaped
//! messages (tests/fixtures/mime), compared with what Dovecot 2.3 answers for
//! the same messages (captured by capture-dovecot.py into *.dovecot). The
//! comparison is of IMAP values, so a string sent quoted by one server and as
//! a literal by the other is the same. A `*.expected` file replaces the
//! Dovecot answer where ringmail deliberately differs (see the README there).

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use ringmail::session::driver::{self, Env};
use ringmail::session::{ConnFacts, Connection, SessionConfig};
use ringmail::store::{MemIo, Settings, Store};

#[derive(Debug, PartialEq)]
enum V {
    Nil,
    Str(Vec<u8>),
    Num(u64),
    List(Vec<V>),
}

fn parse(b: &[u8], i: &mut usize) -> V {
    while b[*i] == b' ' {
        *i += 1;
    }
    match b[*i] {
        b'(' => {
            *i += 1;
            let mut v = Vec::new();
            loop {
                while b[*i] == b' ' {
                    *i += 1;
                }
                if b[*i] == b')' {
                    *i += 1;
                    return V::List(v);
                }
                v.push(parse(b, i));
            }
        }
        b'"' => {
            *i += 1;
            let mut s = Vec::new();
            while b[*i] != b'"' {
                if b[*i] == b'\\' {
                    *i += 1;
                }
                s.push(b[*i]);
                *i += 1;
            }
            *i += 1;
            V::Str(s)
        }
        b'{' => {
            let close = *i + b[*i..].iter().position(|&c| c == b'}').unwrap();
            let n: usize = std::str::from_utf8(&b[*i + 1..close]).unwrap().parse().unwrap();
            let start = close + 3;
            *i = start + n;
            V::Str(b[start..start + n].to_vec())
        }
        _ => {
            let end = *i + b[*i..].iter().position(|&c| c == b' ' || c == b')').unwrap_or(b.len() - *i);
            let atom = &b[*i..end];
            *i = end;
            if atom == b"NIL" {
                V::Nil
            } else if let Ok(n) = std::str::from_utf8(atom).unwrap().parse() {
                V::Num(n)
            } else {
                V::Str(atom.to_vec())
            }
        }
    }
}

fn value(b: &[u8]) -> V {
    let mut i = 0;
    let v = parse(b, &mut i);
    assert_eq!(i, b.len(), "trailing bytes after value: {:?}", String::from_utf8_lossy(&b[i..]));
    v
}

/// A session with every message of the corpus in INBOX, in order.
fn session(messages: &[Vec<u8>]) -> (Connection, Store) {
    let store = Store::new(Rc::new(MemIo::new()), Path::new("/m"), Settings::default());
    let user = store.user("u", 1).unwrap();
    {
        let inbox = user.mailbox("INBOX").unwrap();
        let mut mb = inbox.borrow_mut();
        for raw in messages {
            mb.append_bytes(raw, 0, 0, 1).unwrap();
        }
        mb.commit().unwrap();
    }
    let mut c = Connection::preauthenticated(Arc::new(SessionConfig::default()), ConnFacts { tls: false, cleartext_ok: true, compressed: false }, "u".into());
    c.attach(user);
    driver::exchange(&mut c, &Env { store: &store, auth: None, now: 1 }, b"s EXAMINE INBOX\r\n");
    (c, store)
}

/// Our answer for one item of message `seq`.
fn ours(c: &mut Connection, store: &Store, seq: usize, item: &str) -> Vec<u8> {
    let (all, _) = driver::exchange(c, &Env { store, auth: None, now: 1 }, format!("f FETCH {seq} {item}\r\n").as_bytes());
    let marker = format!("* {seq} FETCH ({item} ");
    let start = all.windows(marker.len()).position(|w| w == marker.as_bytes()).expect("FETCH response") + marker.len();
    let end = all.windows(8).rposition(|w| w == b")\r\nf OK ").expect("end of FETCH");
    all[start..end].to_vec()
}

#[test]
fn envelope_and_bodystructure_match_dovecot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut emls: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect();
    emls.sort();
    assert!(emls.len() >= 12);
    let raws: Vec<Vec<u8>> = emls.iter().map(|e| std::fs::read(e).unwrap()).collect();
    let (mut c, store) = session(&raws);
    let mut failures = Vec::new();
    let mut compared = 0;
    for (i, eml) in emls.iter().enumerate() {
        let stem = eml.file_stem().unwrap().to_string_lossy().to_string();
        for item in ["ENVELOPE", "BODY", "BODYSTRUCTURE"] {
            let lower = item.to_lowercase();
            let expected_path = dir.join(format!("{stem}.{lower}.expected"));
            let path = if expected_path.exists() { expected_path } else { dir.join(format!("{stem}.{lower}.dovecot")) };
            let want = std::fs::read(&path).unwrap();
            let got = ours(&mut c, &store, i + 1, item);
            compared += 1;
            if value(&got) != value(&want) {
                failures.push(format!("{stem} {item}\n  dovecot: {}\n  ours:    {}", String::from_utf8_lossy(&want), String::from_utf8_lossy(&got)));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {compared} differ:\n{}", failures.len(), failures.join("\n"));
}
