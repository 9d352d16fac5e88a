//! Running a scenario: one pinned thread per core, each with its own monoio
//! runtime and its share of the connections (or of the open-loop rate); a
//! live line every second; a merged [`Report`] at the end.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::procmem;
use crate::report::{IdleMemory, Report};
use crate::scenario::{self, Ctx, Global, Options, Pacer, Scenario};
use crate::stats::{summary, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Auto,
    Uring,
    Epoll,
}

/// How hard and how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub opts: Options,
    /// Closed loop: connections; open loop: most units in flight.
    pub connections: usize,
    /// Open loop: units (sessions, or commands) started per second.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub driver: Driver,
    /// idle: measure these server processes.
    pub pids: Vec<u32>,
    pub pid_tree: bool,
    /// Print the live line each second.
    pub live: bool,
}

enum Msg {
    Tick(Recorder),
    Done(Recorder),
}

/// Runs the plan to completion.
pub fn run(plan: Plan) -> Result<Report, String> {
    let threads = plan.threads.max(1).min(plan.connections.max(1));
    let opts = Arc::new(plan.opts.clone());
    let global = Arc::new(Global::default());
    // With --pid: every user logs in once first and the baseline is taken
    // after that (so transient memory of password hashing and cache warm-up
    // is not counted), then memory is measured with half the connections in
    // IDLE and again with all of them; the difference over the second half
    // is the cost per connection.
    let two_levels = opts.scenario == Scenario::Idle && !plan.pids.is_empty() && plan.connections >= 2;
    global.gate.store(if two_levels { plan.connections / 2 } else { usize::MAX }, Ordering::Relaxed);
    let begin = Instant::now();
    let warmup_end = begin + plan.warmup;
    let deadline = match opts.scenario {
        // Held until released, or until every user is filled.
        Scenario::Idle | Scenario::Populate => begin + Duration::from_secs(365 * 86400),
        _ => warmup_end + plan.duration,
    };
    let mut mem_before = if opts.scenario == Scenario::Idle && !plan.pids.is_empty() {
        Some(procmem::measure(&plan.pids, plan.pid_tree).map_err(|e| format!("cannot read the server's memory: {e}"))?)
    } else {
        None
    };
    // slow-reader: the server's memory now, and its peak while the slow
    // reader holds a response open.
    let mut peak_memory = if opts.scenario == Scenario::SlowReader && !plan.pids.is_empty() {
        let m = procmem::measure(&plan.pids, plan.pid_tree).map_err(|e| format!("cannot read the server's memory: {e}"))?;
        Some((m, m))
    } else {
        None
    };
    let mut next_sample = begin;
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (opts, global, tx) = (opts.clone(), global.clone(), tx.clone());
        // This thread's connections: every `threads`-th, starting at `t`.
        let mine: Vec<u32> = (t..plan.connections).step_by(threads).map(|i| i as u32).collect();
        let rate = plan.rate.map(|r| r / threads as f64);
        let driver = plan.driver;
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                let _ = monoio::utils::bind_to_cpu_set([t % cpus]);
                let body = async move {
                    let pacer = rate.map(|r| Pacer::new(warmup_end.min(begin), r));
                    let ctx = Ctx::new(opts, global, warmup_end, deadline, pacer, t);
                    thread_main(ctx, mine, tx).await;
                };
                let uring = driver == Driver::Uring || (driver == Driver::Auto && monoio::utils::detect_uring());
                if uring {
                    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().with_entries(4096).build().expect("io_uring runtime").block_on(body);
                } else {
                    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().with_entries(4096).build().expect("epoll runtime").block_on(body);
                }
            })
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        handles.push(h);
    }
    drop(tx);

    let mut total = Recorder::default();
    let mut interval = Recorder::default();
    let mut done = 0;
    let mut next_print = begin + Duration::from_secs(1);
    let mut idle_mem = None;
    let mut all_idle_at: Option<Instant> = None;
    let idle_give_up = begin + Duration::from_secs(120).max(plan.duration * 4);
    // This process's CPU time over the measured window: what the tool
    // itself costs per session or command.
    let (mut cpu_start, mut cpu_end) = (None, None);
    let mut primed_at: Option<Instant> = None;
    let (mut half_idle_at, mut mid_mem): (Option<Instant>, Option<(procmem::Mem, usize)>) = (None, None);
    while done < threads {
        let wait = next_print.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(Msg::Tick(r)) => interval.merge(&r),
            Ok(Msg::Done(r)) => {
                total.merge(&r);
                done += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if cpu_start.is_none() && now >= warmup_end {
            cpu_start = Some(cpu_time());
        }
        if cpu_end.is_none() && now >= deadline {
            cpu_end = Some(cpu_time());
        }
        if let Some((_, peak)) = peak_memory.as_mut().filter(|_| now >= next_sample) {
            next_sample = now + Duration::from_millis(250);
            if let Ok(m) = procmem::measure(&plan.pids, plan.pid_tree) {
                if m.anonymous > peak.anonymous {
                    *peak = m;
                }
            }
        }
        if now >= next_print {
            if plan.live {
                eprintln!("{}", live_line(now.duration_since(begin), &interval, opts.scenario, &global));
            }
            interval = Recorder::default();
            next_print += Duration::from_secs(1);
        }
        if two_levels && !global.start_idle.load(Ordering::Relaxed) {
            let want = (opts.users as usize).min(plan.connections);
            if primed_at.is_none() && (global.primed.load(Ordering::Relaxed) >= want || now >= idle_give_up) {
                primed_at = Some(now);
            }
            if primed_at.is_some_and(|at| now >= at + Duration::from_secs(3)) {
                mem_before = Some(procmem::measure(&plan.pids, plan.pid_tree).map_err(|e| format!("cannot read the server's memory: {e}"))?);
                global.start_idle.store(true, Ordering::Relaxed);
            }
            continue;
        }
        if opts.scenario == Scenario::Idle && !global.release.load(Ordering::Relaxed) {
            let idling = global.idling.load(Ordering::Relaxed);
            let failed = interval.error_count() + total.error_count();
            let gate = global.gate.load(Ordering::Relaxed);
            if two_levels && !global.second_half.load(Ordering::Relaxed) {
                if half_idle_at.is_none() && (idling + failed as usize >= gate || now >= idle_give_up) {
                    half_idle_at = Some(now);
                }
                if half_idle_at.is_some_and(|at| now >= at + Duration::from_secs(2)) {
                    let m = procmem::measure(&plan.pids, plan.pid_tree).map_err(|e| format!("cannot read the server's memory: {e}"))?;
                    mid_mem = Some((m, idling));
                    if plan.live {
                        eprintln!("{idling} connections in IDLE (first half); opening the rest");
                    }
                    global.second_half.store(true, Ordering::Relaxed);
                }
                continue;
            }
            if all_idle_at.is_none() && (idling + failed as usize >= plan.connections || now >= idle_give_up) {
                all_idle_at = Some(now);
                if plan.live {
                    eprintln!("{idling} connections in IDLE; holding for {:?}", plan.duration);
                }
            }
            if let Some(at) = all_idle_at {
                // Let the server settle, measure, hold for the duration, release.
                if idle_mem.is_none() && now >= at + Duration::from_secs(2) {
                    if let Some(before) = mem_before {
                        let after = procmem::measure(&plan.pids, plan.pid_tree).map_err(|e| format!("cannot read the server's memory: {e}"))?;
                        idle_mem = Some(IdleMemory { before, mid: mid_mem, after, connections: idling });
                    }
                }
                if now >= at + plan.duration.max(Duration::from_secs(2)) {
                    global.release.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let measured = match opts.scenario {
        Scenario::Idle | Scenario::Populate => Instant::now().duration_since(begin),
        _ => plan.duration,
    };
    Ok(Report {
        scenario: opts.scenario.name(),
        target: opts.target.to_string(),
        threads,
        connections: plan.connections,
        rate: plan.rate,
        measured,
        rec: total,
        idle: idle_mem,
        client_cpu: match (cpu_start, cpu_end) {
            (Some(a), Some(b)) if opts.scenario != Scenario::Idle && opts.scenario != Scenario::Populate => Some(b.saturating_sub(a)),
            _ => None,
        },
        populated: (opts.scenario == Scenario::Populate)
            .then(|| (u64::from(global.appended.load(Ordering::Relaxed)), global.bytes.load(Ordering::Relaxed) as u64)),
        peak_memory,
    })
}

fn live_line(at: Duration, r: &Recorder, s: Scenario, g: &Global) -> String {
    let h = r.headline();
    let m = summary(&h);
    let mut line = format!("{:>4}s", at.as_secs());
    if s.is_sessions() {
        line.push_str(&format!("  sessions/s {:>8}", r.sessions.len()));
    }
    line.push_str(&format!("  ops/s {:>8}  errors {:>5}", r.op_count(), r.error_count()));
    if m.count > 0 {
        line.push_str(&format!("  p50 {:.2} ms  p99 {:.2} ms", m.p50, m.p99));
    }
    match s {
        Scenario::Idle => line.push_str(&format!("  in IDLE {}", g.idling.load(Ordering::Relaxed))),
        Scenario::Populate => line.push_str(&format!("  appended {}", g.appended.load(Ordering::Relaxed))),
        _ => {}
    }
    line
}

async fn thread_main(ctx: std::rc::Rc<Ctx>, mine: Vec<u32>, tx: mpsc::Sender<Msg>) {
    let mut tasks = Vec::with_capacity(mine.len());
    for i in mine {
        let c = ctx.clone();
        tasks.push(match c.opts.scenario {
            Scenario::Login => monoio::spawn(scenario::sessions(c, false)),
            Scenario::Session => monoio::spawn(scenario::sessions(c, true)),
            Scenario::Mix => monoio::spawn(scenario::mix(c, i)),
            Scenario::Idle => monoio::spawn(scenario::idle(c, i)),
            Scenario::Append => monoio::spawn(scenario::append(c, i)),
            Scenario::Lmtp => monoio::spawn(scenario::lmtp(c)),
            Scenario::Pop3 => monoio::spawn(scenario::pop3_sessions(c)),
            Scenario::Populate => monoio::spawn(scenario::populate(c)),
            Scenario::SlowReader => monoio::spawn(scenario::slow_reader(c, i)),
        });
    }
    let running = std::rc::Rc::new(std::cell::Cell::new(true));
    let ticker = {
        let (ctx, tx, running) = (ctx.clone(), tx.clone(), running.clone());
        monoio::spawn(async move {
            while running.get() {
                monoio::time::sleep(Duration::from_millis(250)).await;
                let r = std::mem::take(&mut *ctx.live.borrow_mut());
                let _ = tx.send(Msg::Tick(r));
            }
        })
    };
    for t in tasks {
        t.await;
    }
    running.set(false);
    ticker.await;
    let _ = tx.send(Msg::Tick(std::mem::take(&mut *ctx.live.borrow_mut())));
    let _ = tx.send(Msg::Done(std::mem::take(&mut *ctx.total.borrow_mut())));
}

/// User plus system CPU time of this process (all threads).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
