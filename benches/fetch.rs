//! Message access through the protocol core: FETCH of ENVELOPE and
//! BODYSTRUCTURE for 10k messages, BODY[] of a 10 MiB message written to a
//! socket (bytes/s), and SEARCH FROM, SUBJECT and BODY over 10k messages.

use std::io::{IoSlice, Read, Write};
use std::os::unix::net::UnixStream;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmail::proto::Out;

mod common;
use common::{run, session};

fn fetch_structure(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, store) = session(dir.path(), 10_000, None);
    let mut out = Out::new();
    let mut g = c.benchmark_group("FETCH 10k messages");
    g.sample_size(20);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("ENVELOPE BODYSTRUCTURE", |b| {
        b.iter(|| {
            let mut bytes = 0;
            run(&mut conn, &store, "f FETCH 1:* (ENVELOPE BODYSTRUCTURE)\r\n", &mut out, &mut |o| bytes += o.len());
            bytes
        })
    });
    g.bench_function("SEARCH FROM (no match: every message looked at)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            run(&mut conn, &store, "q SEARCH FROM \"zebra-unicorn\"\r\n", &mut out, &mut |o| bytes += o.len());
            bytes
        })
    });
    g.bench_function("SEARCH OR SUBJECT x FROM x (a webmail's quick search, no match)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            run(&mut conn, &store, "q SEARCH OR SUBJECT \"zebra-unicorn\" FROM \"zebra-unicorn\"\r\n", &mut out, &mut |o| bytes += o.len());
            bytes
        })
    });
    g.bench_function("SEARCH BODY (no match: every message scanned)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            run(&mut conn, &store, "q SEARCH BODY \"zebra-unicorn\"\r\n", &mut out, &mut |o| bytes += o.len());
            bytes
        })
    });
    g.finish();
}

fn body_10mib(c: &mut Criterion) {
    let mut big = b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    while big.len() < 10 << 20 {
        big.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, store) = session(dir.path(), 0, Some(&big));
    let (mut tx, mut rx) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut sink = vec![0u8; 1 << 20];
        while rx.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let mut out = Out::new();
    let mut g = c.benchmark_group("BODY[] of a 10 MiB message");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("response built from the mapping and written to a socket", |b| {
        b.iter(|| {
            // The same vectored writes as the network layer: text and mapped slices.
            run(&mut conn, &store, "b FETCH 1 BODY.PEEK[]\r\n", &mut out, &mut |o| {
                for p in o.parts() {
                    let mut p = p;
                    while !p.is_empty() {
                        let n = tx.write_vectored(&[IoSlice::new(p)]).unwrap();
                        p = &p[n..];
                    }
                }
            });
        })
    });
    g.finish();
}

criterion_group!(benches, fetch_structure, body_10mib);
criterion_main!(benches);
