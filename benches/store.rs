//! Store throughput: appends with and without fdatasync, group commit with 1
//! and 64 concurrent appenders (the worker's real committer), and index
//! lookups by UID and by sequence number.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmail::config::SyncMode;
use ringmail::store::{Committer, Io, Mailbox, RealIo, Settings, Target};

fn mailbox(dir: &Path, sync: SyncMode) -> Rc<RefCell<Mailbox>> {
    let io: Rc<dyn Io> = Rc::new(RealIo::inline());
    let settings = Settings { sync, ..Settings::default() };
    Rc::new(RefCell::new(Mailbox::create(io, &dir.join("box"), 1, settings).unwrap()))
}

/// A typical message: 3.8 KiB of text (corpus seed 1, number 1).
fn typical() -> Vec<u8> {
    ringmail_kit::corpus::message(1, 1)
}

fn appends(c: &mut Criterion) {
    let msg = typical();
    let mut g = c.benchmark_group("append 3.8 KiB");
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let mb = mailbox(dir.path(), SyncMode::Never);
    g.bench_function("without sync", |b| b.iter(|| mb.borrow_mut().append_bytes(&msg, 0, 0, 0).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let mb = mailbox(dir.path(), SyncMode::Always);
    g.bench_function("with fdatasync each", |b| {
        b.iter(|| {
            let mut m = mb.borrow_mut();
            m.append_bytes(&msg, 0, 0, 0).unwrap();
            m.commit().unwrap();
        })
    });
    g.finish();
}

/// N tasks on one worker each append and wait for durability; the
/// committer turns their waits into shared syncs.
fn group_commit(c: &mut Criterion) {
    let msg = typical();
    let mut g = c.benchmark_group("group commit, 3.8 KiB appends");
    for n in [1usize, 64] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{n} appenders")), &n, |b, &n| {
            let dir = tempfile::tempdir().unwrap();
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap();
            let mb = mailbox(dir.path(), SyncMode::Always);
            let io: Rc<dyn Io> = Rc::new(RealIo::with_sync_threads(8, "bench-sync"));
            let committer = Committer::new(
                io,
                true,
                Box::new(|f| {
                    monoio::spawn(f);
                }),
            );
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let (mb, committer, msg) = (mb.clone(), committer.clone(), msg.clone());
                            monoio::spawn(async move {
                                mb.borrow_mut().append_bytes(&msg, 0, 0, 0).unwrap();
                                committer.durable(Target::Mailbox(mb)).await.unwrap();
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                })
            });
        });
    }
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mb = mailbox(dir.path(), SyncMode::Never);
    let msg = b"Subject: x\r\n\r\nsmall\r\n";
    {
        let mut m = mb.borrow_mut();
        for _ in 0..100_000 {
            m.append_bytes(msg, 0, 0, 0).unwrap();
        }
        m.checkpoint().unwrap();
    }
    let m = mb.borrow();
    let n = m.exists() as u64;
    let mut g = c.benchmark_group("index lookup (100k messages)");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("by UID", |b| {
        b.iter(|| {
            i = (i * 6_364_136_223_846_793_005 + 1) % n;
            let msg = m.find(i as u32 + 1).unwrap();
            m.location(msg).length
        })
    });
    g.bench_function("by sequence number", |b| {
        b.iter(|| {
            i = (i * 6_364_136_223_846_793_005 + 1) % n;
            let msg = &m.msgs()[i as usize];
            m.location(msg).length
        })
    });
    g.finish();
}

criterion_group!(benches, appends, group_commit, lookups);
criterion_main!(benches);
