//! Replays the fuzzers' corpora (fuzz/corpus/<target>/) through the same
//! checks the fuzz targets run (src/fuzzing.rs), on the stable toolchain:
//! every input a fuzzer found interesting, and every crash it found and we
//! fixed, stays covered by the ordinary test run.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "{target}: {} fails", p.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn decoder() {
    replay("decoder", ringmail::fuzzing::decoder);
}

#[test]
fn utf7() {
    replay("utf7", ringmail::fuzzing::utf7);
}

#[test]
fn mime() {
    replay("mime", ringmail::fuzzing::mime);
}

#[test]
fn smtp() {
    replay("smtp", ringmail::fuzzing::smtp);
}

#[test]
fn session() {
    replay("session", ringmail::fuzzing::session);
}

#[test]
fn message() {
    replay("message", ringmail::fuzzing::message);
}

#[test]
fn pop3() {
    replay("pop3", ringmail::fuzzing::pop3);
}

#[test]
fn dovecot_auth() {
    replay("dovecot_auth", ringmail::fuzzing::dovecot_auth);
}
