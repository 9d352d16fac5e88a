//! Tokenizer throughput: the SIMD backends against the scalar reference on
//! the same realistic command stream, in one run (compare the ratio, not
//! absolute numbers across runs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmail::proto::scan::{Backend, Scanner, Token};

/// A mix of what real clients send: FETCH / UID FETCH with header lists,
/// SEARCH with quoted strings, STORE with flag lists on multi-range UID sets
/// (what a client sends after a multi-selection), CONDSTORE resyncs, and
/// APPEND with a literal.
fn command_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..400u32 {
        let t = format!("A{i:05}");
        let set: Vec<String> = (0..12).map(|k| format!("{}:{}", i * 100 + k * 7, i * 100 + k * 7 + 3)).collect();
        let set = set.join(",");
        match i % 8 {
            0 => s.extend_from_slice(format!("{t} UID FETCH {}:{} (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n", i * 10, i * 10 + 250).as_bytes()),
            1 => s.extend_from_slice(format!("{t} FETCH 1:* (FLAGS UID)\r\n").as_bytes()),
            2 => s.extend_from_slice(format!("{t} UID SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 OR (FROM \"alice@example.com\" SUBJECT \"quarterly report {i}\") (SINCE 1-Feb-2024 NOT DELETED UNKEYWORD $Junk)\r\n").as_bytes()),
            3 => s.extend_from_slice(format!("{t} UID STORE {set} +FLAGS.SILENT (\\Seen \\Flagged $Forwarded $MDNSent)\r\n").as_bytes()),
            4 => s.extend_from_slice(format!("{t} UID FETCH {} (BODYSTRUCTURE ENVELOPE INTERNALDATE BODY.PEEK[1.2.MIME] BODY.PEEK[TEXT]<0.2048>)\r\n", i * 3).as_bytes()),
            5 => s.extend_from_slice(format!("{t} UID FETCH 1:* (FLAGS) (CHANGEDSINCE {})\r\n", 1000 + i).as_bytes()),
            6 => s.extend_from_slice(format!("{t} UID MOVE {set} \"Archive/2024\"\r\n").as_bytes()),
            _ => {
                s.extend_from_slice(format!("{t} APPEND \"Sent Items\" (\\Seen) \"14-Nov-2023 22:13:20 +0000\" {{120+}}\r\n").as_bytes());
                s.extend(std::iter::repeat_n(b'm', 118));
                s.extend_from_slice(b"\r\n\r\n");
            }
        }
    }
    s
}

/// Tokenizes a whole stream the way the decoder does: finds each line end,
/// tokenizes the line, steps over literal data.
fn tokenize_stream(scanner: &mut Scanner, s: &[u8], toks: &mut Vec<Token>) -> usize {
    let mut at = 0;
    let mut n = 0;
    while let Some(lf) = scanner.find_lf(s, at) {
        let end = if lf > at && s[lf - 1] == b'\r' { lf - 1 } else { lf };
        toks.clear();
        let r = scanner.tokenize(s, at..end, at, toks).expect("valid stream");
        n += toks.len();
        at = lf + 1;
        if let Some(a) = r {
            at += a.len as usize;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let stream = command_stream();
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for b in Backend::available() {
        let mut scanner = Scanner::new(b);
        let mut toks = Vec::with_capacity(256);
        g.bench_with_input(BenchmarkId::from_parameter(format!("{b:?}")), &stream, |bench, s| {
            bench.iter(|| {
                // Each iteration sees the stream as a fresh buffer.
                scanner.reset();
                tokenize_stream(&mut scanner, std::hint::black_box(s), &mut toks)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
