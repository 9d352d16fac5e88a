//! What the server is doing, as counters, gauges and histograms in atomics:
//! one block per worker, written only by that worker's thread (relaxed
//! stores on its own cache lines, nothing shared on the hot path) and read
//! by the scrape, which renders them in the Prometheus text format.
//!
//! The sans-io session reports commands through [`command_started`] and
//! [`command_done`], which reach the block of the worker thread they run on
//! (a thread-local set by the worker); elsewhere (tests, tools) they do
//! nothing.

use std::cell::RefCell;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Command names as counted (`CommandBody::name`, plus APPEND, which is
/// streamed, and lines that did not parse).
pub const COMMANDS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "ENABLE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "IDLE",
    "ID",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "UID EXPUNGE",
    "COPY",
    "UID COPY",
    "MOVE",
    "UID MOVE",
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "SEARCH",
    "UID SEARCH",
    "APPEND",
    INVALID,
];

/// Lines that were not a command (answered BAD).
pub const INVALID: &str = "(invalid)";

/// Tagged results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    No = 1,
    Bad = 2,
}

impl Outcome {
    const NAMES: [&'static str; 3] = ["ok", "no", "bad"];
}

/// Connection states of the IMAP gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    NotAuthenticated = 0,
    Authenticated = 1,
    Selected = 2,
    Idle = 3,
}

const CONN_STATES: [&str; 4] = ["not_authenticated", "authenticated", "selected", "idle"];

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// One worker's numbers.
#[derive(Default)]
pub struct WorkerMetrics {
    conns: [AtomicI64; 4],
    lmtp_smtp_conns: AtomicI64,
    pop3_conns: AtomicI64,
    commands: Vec<[AtomicU64; 3]>,
    latency: Vec<Histogram>,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    syncs: Histogram,
    pub sync_failures: AtomicU64,
    pub deliveries_ok: AtomicU64,
    pub deliveries_failed: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

impl WorkerMetrics {
    fn new() -> WorkerMetrics {
        WorkerMetrics {
            commands: COMMANDS.iter().map(|_| Default::default()).collect(),
            latency: COMMANDS.iter().map(|_| Histogram::default()).collect(),
            ..Default::default()
        }
    }

    /// A connection entered `to` (from `from`, if it had a state).
    pub fn conn_state(&self, from: Option<ConnState>, to: Option<ConnState>) {
        if let Some(f) = from {
            self.conns[f as usize].fetch_sub(1, Relaxed);
        }
        if let Some(t) = to {
            self.conns[t as usize].fetch_add(1, Relaxed);
        }
    }

    pub fn delivery_conn(&self, delta: i64) {
        self.lmtp_smtp_conns.fetch_add(delta, Relaxed);
    }

    pub fn pop3_conn(&self, delta: i64) {
        self.pop3_conns.fetch_add(delta, Relaxed);
    }

    pub fn command(&self, name: &str, outcome: Outcome, latency_us: Option<u64>) {
        let i = COMMANDS.iter().position(|c| *c == name).unwrap_or(COMMANDS.len() - 1);
        self.commands[i][outcome as usize].fetch_add(1, Relaxed);
        if let Some(us) = latency_us {
            self.latency[i].observe(us);
        }
    }

    pub fn sync(&self, us: u64, ok: bool) {
        self.syncs.observe(us);
        if !ok {
            self.sync_failures.fetch_add(1, Relaxed);
        }
    }
}

/// Every worker's numbers, and what is fixed for the process.
pub struct Metrics {
    workers: Vec<WorkerMetrics>,
    driver: String,
    started: Instant,
    /// Where mail lives, for the free-space gauges.
    data_dir: Option<std::path::PathBuf>,
    /// Memory held by LMTP/SMTP messages in flight (see `net::spool`).
    pub spool_memory: Arc<std::sync::atomic::AtomicUsize>,
    /// A cluster's backends: (name, this one, answered the last check).
    pub cluster: std::sync::Mutex<Vec<(String, bool, bool)>>,
}

impl Metrics {
    pub fn new(workers: usize, driver: &str) -> Arc<Metrics> {
        Self::with_data_dir(workers, driver, None)
    }

    pub fn with_data_dir(workers: usize, driver: &str, data_dir: Option<std::path::PathBuf>) -> Arc<Metrics> {
        Arc::new(Metrics {
            workers: (0..workers).map(|_| WorkerMetrics::new()).collect(),
            driver: driver.to_string(),
            started: Instant::now(),
            data_dir,
            spool_memory: Arc::default(),
            cluster: Default::default(),
        })
    }

    pub fn worker(&self, i: usize) -> &WorkerMetrics {
        &self.workers[i]
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(16 << 10);
        let w = &self.workers;
        let head = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut s, "ringmail_info", "gauge", "Build and runtime facts.");
        let _ = writeln!(s, "ringmail_info{{version=\"{}\",driver=\"{}\",workers=\"{}\"}} 1", env!("CARGO_PKG_VERSION"), self.driver, w.len());
        head(&mut s, "ringmail_uptime_seconds", "gauge", "Seconds since the server started.");
        let _ = writeln!(s, "ringmail_uptime_seconds {:.3}", self.started.elapsed().as_secs_f64());

        head(&mut s, "ringmail_imap_connections", "gauge", "Open IMAP connections by session state and worker.");
        for (i, m) in w.iter().enumerate() {
            for (k, state) in CONN_STATES.iter().enumerate() {
                let _ = writeln!(s, "ringmail_imap_connections{{worker=\"{i}\",state=\"{state}\"}} {}", m.conns[k].load(Relaxed));
            }
        }
        head(&mut s, "ringmail_delivery_connections", "gauge", "Open LMTP and SMTP connections by worker.");
        for (i, m) in w.iter().enumerate() {
            let _ = writeln!(s, "ringmail_delivery_connections{{worker=\"{i}\"}} {}", m.lmtp_smtp_conns.load(Relaxed));
        }
        head(&mut s, "ringmail_pop3_connections", "gauge", "Open POP3 connections by worker.");
        for (i, m) in w.iter().enumerate() {
            let _ = writeln!(s, "ringmail_pop3_connections{{worker=\"{i}\"}} {}", m.pop3_conns.load(Relaxed));
        }

        head(&mut s, "ringmail_imap_commands_total", "counter", "IMAP commands by name and tagged result.");
        for (c, name) in COMMANDS.iter().enumerate() {
            for (o, outcome) in Outcome::NAMES.iter().enumerate() {
                let n: u64 = w.iter().map(|m| m.commands[c][o].load(Relaxed)).sum();
                if n > 0 {
                    let _ = writeln!(s, "ringmail_imap_commands_total{{command=\"{name}\",result=\"{outcome}\"}} {n}");
                }
            }
        }
        head(
            &mut s,
            "ringmail_imap_command_duration_seconds",
            "histogram",
            "From the arrival of a command's last byte to its tagged response (IDLE excluded).",
        );
        for (c, name) in COMMANDS.iter().enumerate() {
            let h: Vec<&Histogram> = w.iter().map(|m| &m.latency[c]).collect();
            if h.iter().any(|h| h.count.load(Relaxed) > 0) {
                histogram(&mut s, "ringmail_imap_command_duration_seconds", &format!("command=\"{name}\","), &h);
            }
        }

        let counter = |s: &mut String, name: &str, help: &str, f: &dyn Fn(&WorkerMetrics) -> u64| {
            head(s, name, "counter", help);
            let _ = writeln!(s, "{name} {}", w.iter().map(f).sum::<u64>());
        };
        counter(&mut s, "ringmail_logins_total", "Successful LOGIN and AUTHENTICATE.", &|m| m.logins_ok.load(Relaxed));
        counter(&mut s, "ringmail_login_failures_total", "Failed LOGIN and AUTHENTICATE.", &|m| m.logins_failed.load(Relaxed));
        counter(&mut s, "ringmail_received_bytes_total", "Bytes read from clients (after TLS).", &|m| m.bytes_in.load(Relaxed));
        counter(&mut s, "ringmail_sent_bytes_total", "Bytes written to clients (before TLS).", &|m| m.bytes_out.load(Relaxed));
        counter(&mut s, "ringmail_deliveries_total", "Messages stored for a recipient by LMTP or SMTP.", &|m| m.deliveries_ok.load(Relaxed));
        counter(&mut s, "ringmail_delivery_failures_total", "Recipients answered with a temporary or permanent failure after DATA.", &|m| {
            m.deliveries_failed.load(Relaxed)
        });
        counter(&mut s, "ringmail_tls_handshakes_total", "Completed TLS handshakes.", &|m| m.tls_handshakes.load(Relaxed));
        counter(&mut s, "ringmail_tls_handshake_failures_total", "TLS handshakes that failed or timed out.", &|m| m.tls_handshake_failures.load(Relaxed));
        counter(&mut s, "ringmail_store_sync_failures_total", "Group commits whose sync failed.", &|m| m.sync_failures.load(Relaxed));
        head(&mut s, "ringmail_store_sync_duration_seconds", "histogram", "Group commits: fdatasync of every file of the batch.");
        histogram(&mut s, "ringmail_store_sync_duration_seconds", "", &w.iter().map(|m| &m.syncs).collect::<Vec<_>>());
        head(&mut s, "ringmail_delivery_memory_bytes", "gauge", "Memory held by LMTP/SMTP messages in flight (larger ones wait on disk).");
        let _ = writeln!(s, "ringmail_delivery_memory_bytes {}", self.spool_memory.load(Relaxed));
        let cluster = self.cluster.lock().expect("metrics lock").clone();
        if !cluster.is_empty() {
            head(&mut s, "ringmail_cluster_backend_up", "gauge", "Backends of the cluster map: 1 if its IMAP port answered the last check.");
            for (name, me, up) in cluster {
                let _ = writeln!(s, "ringmail_cluster_backend_up{{backend=\"{name}\",self=\"{me}\"}} {}", u8::from(up));
            }
        }
        if let Some((free, total)) = self.data_dir.as_deref().and_then(crate::datadir::disk_space) {
            head(&mut s, "ringmail_data_free_bytes", "gauge", "Free space on the data directory's file system (for unprivileged users).");
            let _ = writeln!(s, "ringmail_data_free_bytes {free}");
            head(&mut s, "ringmail_data_size_bytes", "gauge", "Size of the data directory's file system.");
            let _ = writeln!(s, "ringmail_data_size_bytes {total}");
        }
        s
    }
}

fn histogram(s: &mut String, name: &str, labels: &str, parts: &[&Histogram]) {
    let mut cumulative = 0;
    for (b, le) in BUCKETS_US.iter().enumerate() {
        cumulative += parts.iter().map(|h| h.buckets[b].load(Relaxed)).sum::<u64>();
        let _ = writeln!(s, "{name}_bucket{{{labels}le=\"{}\"}} {cumulative}", *le as f64 / 1e6);
    }
    let count: u64 = parts.iter().map(|h| h.count.load(Relaxed)).sum();
    let sum: u64 = parts.iter().map(|h| h.sum_us.load(Relaxed)).sum();
    let _ = writeln!(s, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
    let bare = labels.trim_end_matches(',');
    let braces = if bare.is_empty() { String::new() } else { format!("{{{bare}}}") };
    let _ = writeln!(s, "{name}_sum{braces} {}", sum as f64 / 1e6);
    let _ = writeln!(s, "{name}_count{braces} {count}");
}

thread_local! {
    static CURRENT: RefCell<Option<(Arc<Metrics>, usize)>> = const { RefCell::new(None) };
}

/// Makes this thread worker `i` for the session's reports.
pub fn attach_thread(metrics: Arc<Metrics>, i: usize) {
    CURRENT.with(|c| *c.borrow_mut() = Some((metrics, i)));
}

/// Runs `f` on this thread's worker block, if it has one.
pub fn with_worker<R>(f: impl FnOnce(&WorkerMetrics) -> R) {
    CURRENT.with(|c| {
        if let Some((m, i)) = c.borrow().as_ref() {
            f(m.worker(*i));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::new(2, "Uring");
        m.worker(0).command("FETCH", Outcome::Ok, Some(300));
        m.worker(1).command("FETCH", Outcome::Ok, Some(40));
        m.worker(1).command("FETCH", Outcome::Bad, None);
        m.worker(0).command("NO SUCH", Outcome::Bad, None);
        m.worker(1).conn_state(None, Some(ConnState::Idle));
        m.worker(0).sync(2_000, true);
        let t = m.render();
        assert!(t.contains("ringmail_imap_commands_total{command=\"FETCH\",result=\"ok\"} 2\n"), "{t}");
        assert!(t.contains("ringmail_imap_commands_total{command=\"FETCH\",result=\"bad\"} 1\n"));
        assert!(t.contains("ringmail_imap_commands_total{command=\"(invalid)\",result=\"bad\"} 1\n"));
        assert!(t.contains("ringmail_imap_command_duration_seconds_bucket{command=\"FETCH\",le=\"0.0001\"} 1\n"));
        assert!(t.contains("ringmail_imap_command_duration_seconds_bucket{command=\"FETCH\",le=\"0.0005\"} 2\n"));
        assert!(t.contains("ringmail_imap_command_duration_seconds_count{command=\"FETCH\"} 2\n"));
        assert!(t.contains("ringmail_imap_connections{worker=\"1\",state=\"idle\"} 1\n"));
        assert!(t.contains("ringmail_store_sync_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(t.contains("ringmail_store_sync_duration_seconds_count 1\n"));
        assert!(t.contains("ringmail_info{version=\""));
        // Every sample line is `name{labels} value` or `name value`.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn reports_reach_the_thread_s_worker() {
        let m = Metrics::new(1, "Epoll");
        with_worker(|w| w.command("NOOP", Outcome::Ok, None)); // no worker: ignored
        attach_thread(m.clone(), 0);
        with_worker(|w| w.command("NOOP", Outcome::Ok, Some(10)));
        assert!(m.render().contains("ringmail_imap_commands_total{command=\"NOOP\",result=\"ok\"} 1\n"));
    }
}
