//! Property tests of the incremental decoder and parser (proptest): any
//! input, cut anywhere, gives the same events as the whole input and never
//! panics; generated well-formed commands parse to what was generated.

use std::sync::Arc;

use proptest::prelude::*;
use ringmail::proto::{CommandBody, Decoder, Event, Limits, SeqNum, SeqRange, SequenceSet};

/// Feeds `chunks` in turn and records every event in a comparable form.
/// Continuation requests depend on how the input was cut (a literal already
/// fully received needs none), and APPEND data comes in pieces of whatever
/// size arrived, so both are normalised away.
fn events(chunks: &[&[u8]]) -> Vec<String> {
    let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
    let mut log: Vec<String> = Vec::new();
    'feed: for c in chunks {
        d.feed(c);
        loop {
            let e = match d.next() {
                Event::NeedMore => break,
                Event::Continue => continue,
                Event::Command(c) => format!("command {} {:?}", c.tag, c.body),
                Event::AppendStart(h) => {
                    let s = format!("append {h:?}");
                    d.accept_append();
                    s
                }
                Event::AppendData(bytes) => {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    match log.last_mut() {
                        Some(last) if last.starts_with("data ") => {
                            last.push_str(&hex);
                            continue;
                        }
                        _ => format!("data {hex}"),
                    }
                }
                Event::AppendNext(m) => {
                    let s = format!("append next {m:?}");
                    d.accept_append();
                    s
                }
                Event::AppendEnd(r) => format!("append end {r:?}"),
                Event::AuthLine(l) => format!("auth {l:?}"),
                Event::IdleDone(ok) => format!("idle done {ok}"),
                Event::Bad { tag, message } => format!("bad {tag:?} {message}"),
                Event::Fatal(m) => {
                    log.push(format!("fatal {m}"));
                    break 'feed;
                }
            };
            log.push(e);
        }
    }
    log
}

/// Cases per property; `PROPTEST_CASES` raises it for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// IMAP-flavoured bytes: fragments of real commands mixed with noise.
fn imapish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"a1 ".to_vec()),
        Just(b"FETCH ".to_vec()),
        Just(b"UID ".to_vec()),
        Just(b"1:* ".to_vec()),
        Just(b"(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>)".to_vec()),
        Just(b"SEARCH OR SEEN (FROM \"x\" LARGER 5) ".to_vec()),
        Just(b"APPEND INBOX (\\Seen) {5}\r\nhello".to_vec()),
        Just(b"{3+}\r\nabc".to_vec()),
        Just(b" (\\Flagged) \" 7-Feb-1994 22:43:04 -0800\" {2+}\r\nhi".to_vec()),
        Just(b" {4}\r\nnext".to_vec()),
        Just(b"\"quo\\\"ted\" ".to_vec()),
        Just(b"STORE 2 +FLAGS.SILENT (\\Deleted) ".to_vec()),
        Just(b"SELECT \"INBOX\" (CONDSTORE) ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"(".to_vec()),
        Just(b")".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), .. ProptestConfig::default() })]

    #[test]
    fn any_input_cut_anywhere_gives_the_same_events(input in imapish(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let whole = events(&[&input]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for a in at {
            chunks.push(&input[prev..a]);
            prev = a;
        }
        chunks.push(&input[prev..]);
        prop_assert_eq!(events(&chunks), whole);
    }

    #[test]
    fn byte_at_a_time_matches_whole(input in imapish()) {
        let whole = events(&[&input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(events(&bytes), whole);
    }
}

fn seq_range() -> impl Strategy<Value = SeqRange> {
    // Every number from 1 to 4294967295 is valid (RFC 9051 9), and `*`.
    let n = prop_oneof![4 => (1u32..100_000).prop_map(SeqNum::Num), 1 => (u32::MAX - 3..=u32::MAX).prop_map(SeqNum::Num), 1 => Just(SeqNum::Star)];
    (n.clone(), prop::option::of(n)).prop_map(|(a, b)| SeqRange { start: a, end: b.unwrap_or(a) })
}

fn render_set(set: &[SeqRange]) -> String {
    set.iter().map(|r| if r.start == r.end { r.start.to_string() } else { format!("{}:{}", r.start, r.end) }).collect::<Vec<_>>().join(",")
}

/// A mailbox name as an atom, a quoted string or a literal.
fn mailbox() -> impl Strategy<Value = (Vec<u8>, String)> {
    let name = "[A-Za-z][A-Za-z0-9/._-]{0,20}";
    prop_oneof![
        name.prop_map(|n| (n.as_bytes().to_vec(), n.clone())),
        "[ -~]{0,20}".prop_map(|n| {
            let q = format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""));
            (n.as_bytes().to_vec(), q)
        }),
        "[ -~]{0,20}".prop_map(|n| (n.as_bytes().to_vec(), format!("{{{}+}}\r\n{n}", n.len()))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), .. ProptestConfig::default() })]

    #[test]
    fn generated_fetch_and_store_parse_to_what_was_generated(
        tag in "[A-Za-z0-9]{1,8}",
        set in proptest::collection::vec(seq_range(), 1..6),
        uid in any::<bool>(),
        store in any::<bool>(),
    ) {
        let prefix = if uid { "UID " } else { "" };
        let line = if store {
            format!("{tag} {prefix}STORE {} +FLAGS.SILENT (\\Seen $Label1)\r\n", render_set(&set))
        } else {
            format!("{tag} {prefix}FETCH {} (UID FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.2048>)\r\n", render_set(&set))
        };
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        d.feed(line.as_bytes());
        match d.next() {
            Event::Command(c) => {
                prop_assert_eq!(&c.tag, &tag);
                let got = match c.body {
                    CommandBody::Fetch { set, uid: u, .. } if !store => { prop_assert_eq!(u, uid); set }
                    CommandBody::Store { set, uid: u, silent, .. } if store => { prop_assert_eq!(u, uid); prop_assert!(silent); set }
                    other => return Err(TestCaseError::fail(format!("parsed as {other:?}"))),
                };
                // Parsed sets are normalized: the same members, merged.
                prop_assert_eq!(got, SequenceSet::from_ranges(&set));
            }
            other => return Err(TestCaseError::fail(format!("{line:?} gave {other:?}"))),
        }
    }

    #[test]
    fn generated_select_parses_the_mailbox_in_every_form(tag in "[a-z0-9]{1,6}", (name, wire) in mailbox(), examine in any::<bool>()) {
        let verb = if examine { "EXAMINE" } else { "SELECT" };
        let line = format!("{tag} {verb} {wire}\r\n");
        let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
        d.feed(line.as_bytes());
        let mut ev = d.next();
        while matches!(ev, Event::Continue) {
            ev = d.next();
        }
        match ev {
            Event::Command(c) => match c.body {
                CommandBody::Select { mailbox, read_only, .. } => {
                    prop_assert_eq!(mailbox.0, name);
                    prop_assert_eq!(read_only, examine);
                }
                other => return Err(TestCaseError::fail(format!("parsed as {other:?}"))),
            },
            // An empty atom is not a mailbox: the atom form needs one character.
            Event::Bad { .. } if name.is_empty() => {}
            other => return Err(TestCaseError::fail(format!("{line:?} gave {other:?}"))),
        }
    }
}

/// Found by the property above: a literal announced at the end of a line
/// being discarded (here after an APPEND message, where MULTIAPPEND would
/// continue) must be skipped even when the announcement arrives split over
/// reads; its data was once read as a new command.
#[test]
fn literal_in_a_discarded_line_is_skipped_whatever_the_split() {
    let input: &[u8] = b"a1 APPEND INBOX (\\Seen) {5}\r\nhello{3+}\r\nabc{3+}\r\nabc\r\nb NOOP\r\n";
    let whole = events(&[input]);
    assert_eq!(whole.last().map(String::as_str), Some("command b Noop"), "{whole:?}");
    assert!(!whole.iter().any(|e| e.contains("abc")), "{whole:?}");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(events(&bytes), whole);
}
