//! SORT and THREAD over a 100k-message INBOX through the protocol core,
//! as a webmail page view asks for them, and the memory one command takes:
//! a counting allocator records the peak above what was allocated before
//! the command, reported per message of the mailbox. Each command is timed
//! three ways: "first" with nothing kept (the keys of every message are read
//! from their caches and sorted or threaded), "after an arrival" (what the
//! mailbox kept is brought up to date: a SORT places the new message in its
//! kept order, a THREAD threads again over its kept keys), and "repeated"
//! when nothing changed since the same command (the kept order is filtered,
//! the kept threads rebuilt).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmail::proto::Out;

mod common;
use common::{run, session};

const MESSAGES: u64 = 100_000;

/// mimalloc, counting the bytes allocated now and the highest since reset.
struct Counting;

static NOW_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds the
// GlobalAlloc contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW_BYTES.fetch_add(l.size(), Relaxed) + l.size();
        PEAK_BYTES.fetch_max(now, Relaxed);
        // SAFETY: the caller's layout is passed through as given.
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW_BYTES.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = NOW_BYTES.fetch_add(new - l.size(), Relaxed) + new - l.size();
            PEAK_BYTES.fetch_max(now, Relaxed);
        } else {
            NOW_BYTES.fetch_sub(l.size() - new, Relaxed);
        }
        // SAFETY: `p` came from this allocator with layout `l`.
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const COMMANDS: &[(&str, &str)] = &[
    ("SORT (SUBJECT)", "s SORT (SUBJECT) UTF-8 ALL\r\n"),
    ("SORT (REVERSE DATE)", "s SORT (REVERSE DATE) UTF-8 ALL\r\n"),
    ("SORT (DISPLAYFROM)", "s SORT (DISPLAYFROM) UTF-8 ALL\r\n"),
    ("SORT (SIZE)", "s SORT (SIZE) UTF-8 ALL\r\n"),
    ("SORT RETURN (PARTIAL 1:50) (REVERSE ARRIVAL)", "s SORT RETURN (PARTIAL 1:50) (REVERSE ARRIVAL) UTF-8 ALL\r\n"),
    ("THREAD ORDEREDSUBJECT", "t THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"),
    ("THREAD REFERENCES", "t THREAD REFERENCES UTF-8 ALL\r\n"),
    ("THREAD REFS", "t THREAD REFS UTF-8 ALL\r\n"),
];

fn sort_and_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, store) = session(dir.path(), MESSAGES, None);
    let mut out = Out::new();
    for (name, cmd) in COMMANDS {
        let before = NOW_BYTES.load(Relaxed);
        PEAK_BYTES.store(before, Relaxed);
        let mut bytes = 0;
        run(&mut conn, &store, cmd, &mut out, &mut |o| bytes += o.len());
        let peak = PEAK_BYTES.load(Relaxed) - before;
        println!("{name}: {bytes} bytes of response, peak memory {peak} B above the session's ({:.1} B per message)", peak as f64 / MESSAGES as f64);
    }
    let inbox = store.user("bench", common::NOW).unwrap().mailbox("INBOX").unwrap();
    let (conn, out) = (RefCell::new(conn), RefCell::new(out));
    let mut arrivals = 0u64;
    let mut g = c.benchmark_group("100k messages");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MESSAGES));
    for (name, cmd) in COMMANDS {
        let mut time = |label: &str, first: bool, arrival: bool| {
            g.bench_function(format!("{name}, {label}"), |b| {
                b.iter_batched(
                    || {
                        let mut mb = inbox.borrow_mut();
                        if arrival {
                            arrivals += 1;
                            mb.append_bytes(&ringmail_kit::corpus::message(43, arrivals), 0, 0, common::NOW).unwrap();
                            mb.commit().unwrap();
                            // The session learns of it (EXISTS), as a
                            // client does before it asks again.
                            drop(mb);
                            run(&mut conn.borrow_mut(), &store, "n NOOP\r\n", &mut out.borrow_mut(), &mut |_| {});
                            mb = inbox.borrow_mut();
                        }
                        if first {
                            mb.forget_derived();
                        }
                    },
                    |()| {
                        let mut bytes = 0;
                        run(&mut conn.borrow_mut(), &store, cmd, &mut out.borrow_mut(), &mut |o| bytes += o.len());
                        bytes
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
        };
        time("first", true, false);
        time("after an arrival", false, true);
        time("repeated", false, false);
    }
    g.finish();
}

criterion_group!(benches, sort_and_thread);
criterion_main!(benches);
