//! MIME analysis at delivery (ENVELOPE, BODYSTRUCTURE, part offsets, search
//! text): a typical message, and the hostile shapes of the hardening issue,
//! each of which once held a worker for seconds or crashed it. The whole
//! analysis runs on the worker, so each must stay well under ~100 ms.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The server's allocator, so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ringmail_kit::corpus::{many_addresses, message, nested_message, nested_multipart};

fn analysis(c: &mut Criterion) {
    let mut g = c.benchmark_group("mime::analyze");
    g.sample_size(10);
    let cases: [(&str, Vec<u8>); 4] = [
        ("typical 3.8 KiB", message(1, 1)),
        ("100k nested multiparts", nested_multipart(100_000)),
        ("100k nested message/rfc822", nested_message(100_000)),
        ("100k addresses in To", many_addresses(100_000)),
    ];
    for (name, m) in &cases {
        g.throughput(Throughput::Bytes(m.len() as u64));
        g.bench_function(*name, |b| b.iter(|| ringmail::mime::analyze(m)));
    }
    // The 200 messages the load tool's `append` and `mix` draw from.
    let corpus: Vec<Vec<u8>> = (0..200).map(|i| message(1, i)).collect();
    g.throughput(Throughput::Bytes(corpus.iter().map(|m| m.len() as u64).sum()));
    g.bench_function("load corpus, 200 messages", |b| b.iter(|| corpus.iter().map(|m| ringmail::mime::analyze(m).len()).sum::<usize>()));
    g.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);
