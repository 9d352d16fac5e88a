//! Hostile shapes: whatever a message looks like, analysing it and reading
//! its cache must neither recurse with the input nor take more than linear
//! time, and deep parts must have a defined answer.

use super::*;
use ringmail_kit::corpus::{many_addresses, nested_message, nested_multipart};

/// Runs `f` on a thread with a small stack, as a worker would meet it.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new().stack_size(128 << 10).spawn(f).unwrap().join().expect("no stack overflow, no panic")
}

#[test]
fn a_hundred_thousand_nested_multiparts_stop_at_the_depth_limit() {
    let (blob, len) = on_small_stack(|| {
        let m = nested_multipart(100_000);
        (analyze(&m), m.len())
    });
    let c = Cache::parse(&blob).expect("valid cache");
    assert!(len > 5_000_000);
    // 99 nested multiparts, then one opaque part holding the rest.
    let deepest = c.iter_parts().max_by_key(|p| p.path.len()).unwrap();
    assert_eq!(deepest.path.len(), scan::MAX_DEPTH - 1);
    assert_eq!(deepest.kind, Kind::Leaf);
    assert!(std::str::from_utf8(c.bodystructure).unwrap().contains("(\"application\" \"octet-stream\" (\"boundary\" \"x99x\")"));
}

#[test]
fn a_hundred_thousand_nested_messages_stop_at_the_depth_limit() {
    let blob = on_small_stack(|| analyze(&nested_message(100_000)));
    let c = Cache::parse(&blob).expect("valid cache");
    let deepest = c.iter_parts().max_by_key(|p| p.path.len()).unwrap();
    assert_eq!(deepest.path.len(), scan::MAX_DEPTH);
    assert!(std::str::from_utf8(c.body).unwrap().contains("(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\""));
}

#[test]
fn a_hundred_thousand_addresses_are_all_in_the_envelope() {
    let blob = on_small_stack(|| analyze(&many_addresses(100_000)));
    let c = Cache::parse(&blob).expect("valid cache");
    let env = std::str::from_utf8(c.envelope).unwrap();
    assert_eq!(env.matches("\"example.com\")").count(), 100_001);
    assert!(c.search_text("TO").unwrap().windows(14).any(|w| w == b"user99999@exam"));
}

#[test]
fn too_many_parts_end_in_one_part() {
    let mut m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    for i in 0..20_000 {
        m.extend_from_slice(format!("--b\r\n\r\npart {i}\r\n").as_bytes());
    }
    m.extend_from_slice(b"--b--\r\n");
    let c_blob = analyze(&m);
    let c = Cache::parse(&c_blob).unwrap();
    let n = c.iter_parts().count();
    assert!(n < scan::MAX_PARTS, "{n}");
    let last = c.iter_parts().last().unwrap();
    assert!(last.end as usize > m.len() - 100, "the rest is the last part's body");
}

#[test]
fn the_sort_keys_alone_are_what_the_whole_cache_holds() {
    let m =
        b"From: A <a@x.org>\r\nSubject: Re: hello\r\nReferences: <1@x> <2@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n";
    let blob = analyze(m);
    let whole = Cache::parse(&blob).unwrap().sort.unwrap();
    assert_eq!(Cache::sort_keys(&blob), Some(whole));
    assert_eq!(whole.subject, b"HELLO");
    assert_eq!(Cache::sort_keys(&blob[..SORT_KEYS_AT + 12]), None, "keys cut short are refused");
    assert_eq!(Cache::parse(&blob[..blob.len() - 1]).map(|c| c.sort), None, "so is a cut blob");
}

/// The version 5 layout of a version 6 blob: no preview and EMAILID hash
/// after the search text.
pub(crate) fn as_version_5(v6: &[u8]) -> Vec<u8> {
    let (_, keys_len) = SortKeysRef::decode(&v6[SORT_KEYS_AT..]).unwrap();
    let mut at = SORT_KEYS_AT + keys_len;
    for _ in 0..3 + SEARCH_FIELDS.len() {
        at += 4 + u32::from_le_bytes(v6[at..at + 4].try_into().unwrap()) as usize;
    }
    let preview_end = at + 4 + u32::from_le_bytes(v6[at..at + 4].try_into().unwrap()) as usize + 16;
    let mut v5 = vec![5];
    v5.extend_from_slice(&v6[1..at]);
    v5.extend_from_slice(&v6[preview_end..]);
    v5
}

/// The version 4 layout of a version 5 blob: the sort keys moved after the
/// search text.
fn as_version_4(v5: &[u8]) -> Vec<u8> {
    let (_, keys_len) = SortKeysRef::decode(&v5[SORT_KEYS_AT..]).unwrap();
    let keys = &v5[SORT_KEYS_AT..SORT_KEYS_AT + keys_len];
    let mut at = SORT_KEYS_AT + keys_len;
    for _ in 0..3 + SEARCH_FIELDS.len() {
        at += 4 + u32::from_le_bytes(v5[at..at + 4].try_into().unwrap()) as usize;
    }
    let mut v4 = vec![4];
    v4.extend_from_slice(&v5[1..SORT_KEYS_AT]);
    v4.extend_from_slice(&v5[SORT_KEYS_AT + keys_len..at]);
    v4.extend_from_slice(keys);
    v4.extend_from_slice(&v5[at..]);
    v4
}

#[test]
fn version_4_and_5_caches_are_still_read_whole() {
    let m = b"From: A <a@x.org>\r\nSubject: [x] Fwd: hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n";
    let v6 = analyze(m);
    let v5 = as_version_5(&v6);
    let v4 = as_version_4(&v5);
    let (new, old) = (Cache::parse(&v6).unwrap(), Cache::parse(&v4).unwrap());
    assert_eq!(Cache::parse(&v5).unwrap().preview(m), new.preview(m), "made from the message when not kept");
    assert_eq!(Cache::parse(&v5).unwrap().email_hash(m), new.email_hash(m));
    assert_eq!(new.preview(m), "one");
    assert_eq!(old.sort, new.sort);
    assert_eq!(Cache::sort_keys(&v4), new.sort);
    assert_eq!((old.envelope, old.bodystructure, old.search_text("SUBJECT")), (new.envelope, new.bodystructure, new.search_text("SUBJECT")));
    assert_eq!(old.iter_parts().map(|p| p.path).collect::<Vec<_>>(), new.iter_parts().map(|p| p.path).collect::<Vec<_>>());
    assert_eq!(new.sort.unwrap().subject, b"HI");
}

/// The part table is checked whole without building a part: every cut of
/// a cache blob short of its end is refused, and the whole one lists the
/// parts iteration gives.
#[test]
fn a_cut_part_table_is_refused_and_a_whole_one_read() {
    let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ny\r\n--b--\r\n";
    let blob = analyze(m);
    let c = Cache::parse(&blob).expect("whole");
    assert_eq!(c.iter_parts().count(), c.nparts as usize);
    assert!(c.nparts >= 3, "{} parts", c.nparts);
    let table_at = blob.len() - c.parts.len();
    for cut in table_at..blob.len() {
        assert!(Cache::parse(&blob[..cut]).is_none(), "cut at {cut} of {}", blob.len());
    }
}
