//! The end of a run: a table on stdout, and on request JSON for machines,
//! HdrHistogram percentile distributions (`.hgrm`) and an SVG plot.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::procmem::Mem;
use crate::stats::{summary, Recorder, Summary};

/// Memory of the server under test in the idle scenario.
#[derive(Debug, Clone, Copy)]
pub struct IdleMemory {
    pub before: Mem,
    /// With half of the connections in IDLE, and how many that was.
    pub mid: Option<(Mem, usize)>,
    pub after: Mem,
    /// Connections that were in IDLE when `after` was taken.
    pub connections: usize,
}

impl IdleMemory {
    /// Bytes per connection of one measure: over the second half of the
    /// connections when there are two levels, else over all of them.
    fn per_conn(&self, f: impl Fn(&Mem) -> u64) -> f64 {
        let (base, n) = match &self.mid {
            Some((m, n)) if self.connections > *n => (f(m), self.connections - n),
            _ => (f(&self.before), self.connections),
        };
        f(&self.after).saturating_sub(base) as f64 / n.max(1) as f64
    }
    pub fn rss_per_conn(&self) -> f64 {
        self.per_conn(|m| m.rss)
    }
    pub fn private_per_conn(&self) -> f64 {
        self.per_conn(|m| m.private)
    }
    pub fn anonymous_per_conn(&self) -> f64 {
        self.per_conn(|m| m.anonymous)
    }
    pub fn pss_per_conn(&self) -> f64 {
        self.per_conn(|m| m.pss)
    }
}

pub struct Report {
    pub scenario: &'static str,
    pub target: String,
    pub threads: usize,
    pub connections: usize,
    pub rate: Option<f64>,
    pub measured: Duration,
    pub rec: Recorder,
    pub idle: Option<IdleMemory>,
    /// The load tool's own CPU time during the measured window.
    pub client_cpu: Option<Duration>,
    /// populate: messages and bytes appended.
    pub populated: Option<(u64, u64)>,
    /// slow-reader with --pid: the server's memory before the run and at
    /// its peak (by anonymous memory: mapped mail is page cache).
    pub peak_memory: Option<(Mem, Mem)>,
}

impl Report {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// The tool's CPU microseconds per session (login, session) or operation.
    pub fn cpu_per_unit_us(&self) -> Option<f64> {
        let units = if self.rec.sessions.is_empty() { self.rec.op_count() } else { self.rec.sessions.len() };
        self.client_cpu.filter(|_| units > 0).map(|c| c.as_secs_f64() * 1e6 / units as f64)
    }

    pub fn sessions_per_sec(&self) -> f64 {
        self.per_sec(self.rec.sessions.len())
    }

    fn rows(&self) -> Vec<(String, f64, Summary)> {
        let mut rows: Vec<(String, f64, Summary)> = self.rec.ops.iter().map(|(name, h)| (name.to_string(), self.per_sec(h.len()), summary(h))).collect();
        if !self.rec.sessions.is_empty() {
            rows.push(("session".into(), self.sessions_per_sec(), summary(&self.rec.sessions)));
        }
        rows
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let shape = match self.rate {
            Some(r) => format!("open loop at {r}/s, up to {} in flight", self.connections),
            None => format!("closed loop, {} connections", self.connections),
        };
        let _ = writeln!(s, "\n{} against {}: {:.1} s measured, {} threads, {shape}", self.scenario, self.target, self.measured.as_secs_f64(), self.threads);
        if !self.rec.sessions.is_empty() {
            let _ = writeln!(s, "sessions/s {:.1}   sessions {}", self.sessions_per_sec(), self.rec.sessions.len());
        }
        let _ = writeln!(s, "ops/s {:.1}   operations {}   errors {}", self.per_sec(self.rec.op_count()), self.rec.op_count(), self.rec.error_count());
        let _ = writeln!(
            s,
            "{:<14} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "per sec", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (name, rate, m) in self.rows() {
            let _ = writeln!(s, "{name:<14} {:>10} {rate:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}", m.count, m.p50, m.p90, m.p99, m.p999, m.max);
        }
        if let Some(cpu) = self.client_cpu {
            let _ = writeln!(
                s,
                "client CPU {:.2} s ({:.0}% of a core), {:.1} us per {}",
                cpu.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / self.measured.as_secs_f64().max(1e-9),
                self.cpu_per_unit_us().unwrap_or(0.0),
                if self.rec.sessions.is_empty() { "operation" } else { "session" }
            );
        }
        if let Some(m) = &self.idle {
            let _ = writeln!(
                s,
                "server memory: {} connections in IDLE; RSS {} -> {} KiB, private {} -> {} KiB, anonymous {} -> {} KiB ({} processes)",
                m.connections,
                m.before.rss / 1024,
                m.after.rss / 1024,
                m.before.private / 1024,
                m.after.private / 1024,
                m.before.anonymous / 1024,
                m.after.anonymous / 1024,
                m.after.processes
            );
            if let Some((mid, n)) = &m.mid {
                let _ = writeln!(
                    s,
                    "  with {n} connections (first half): RSS {} KiB, anonymous {} KiB; per connection below is over the other {}",
                    mid.rss / 1024,
                    mid.anonymous / 1024,
                    m.connections.saturating_sub(*n)
                );
            }
            let _ = writeln!(
                s,
                "per connection: RSS {:.0} B, private {:.0} B, anonymous {:.0} B, PSS {:.0} B",
                m.rss_per_conn(),
                m.private_per_conn(),
                m.anonymous_per_conn(),
                m.pss_per_conn()
            );
        }
        if let Some((n, bytes)) = self.populated {
            let _ = writeln!(s, "populated: {n} messages, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
        }
        if let Some((before, peak)) = &self.peak_memory {
            let _ = writeln!(
                s,
                "server memory: anonymous {} KiB before, {} KiB at peak (+{} KiB); RSS {} -> {} KiB (mapped mail included)",
                before.anonymous / 1024,
                peak.anonymous / 1024,
                peak.anonymous.saturating_sub(before.anonymous) / 1024,
                before.rss / 1024,
                peak.rss / 1024
            );
        }
        if !self.rec.errors.is_empty() {
            let _ = writeln!(s, "errors:");
            for (k, v) in &self.rec.errors {
                let _ = writeln!(s, "  {v:>8}  {k}");
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        let lat = |m: &Summary| json!({"count": m.count, "p50": m.p50, "p90": m.p90, "p99": m.p99, "p99_9": m.p999, "max": m.max});
        let mut ops = Map::new();
        let mut latency = Map::new();
        for (name, rate, m) in self.rows() {
            if name != "session" {
                ops.insert(name.clone(), json!(rate));
            }
            latency.insert(name, lat(&m));
        }
        let mut v = json!({
            "scenario": self.scenario,
            "target": self.target,
            "threads": self.threads,
            "connections": self.connections,
            "rate": self.rate,
            "duration_s": self.measured.as_secs_f64(),
            "sessions": self.rec.sessions.len(),
            "sessions_per_sec": if self.rec.sessions.is_empty() { Value::Null } else { json!(self.sessions_per_sec()) },
            "ops_per_sec": ops,
            "total_ops_per_sec": self.per_sec(self.rec.op_count()),
            "latency_ms": latency,
            "errors": self.rec.error_count(),
            "client_cpu_s": self.client_cpu.map(|c| c.as_secs_f64()),
            "client_cpu_us_per_unit": self.cpu_per_unit_us(),
            "error_kinds": self.rec.errors,
        });
        if let Some(m) = &self.idle {
            v["memory"] = json!({
                "connections": m.connections,
                "rss_before": m.before.rss, "rss_after": m.after.rss,
                "private_before": m.before.private, "private_after": m.after.private,
                "anonymous_before": m.before.anonymous, "anonymous_after": m.after.anonymous,
                "first_half": m.mid.map(|(mid, n)| json!({"connections": n, "rss": mid.rss, "private": mid.private, "anonymous": mid.anonymous})),
                "pss_before": m.before.pss, "pss_after": m.after.pss,
                "processes": m.after.processes,
                "rss_per_connection": m.rss_per_conn(),
                "private_per_connection": m.private_per_conn(),
                "anonymous_per_connection": m.anonymous_per_conn(),
                "pss_per_connection": m.pss_per_conn(),
            });
        }
        if let Some((n, bytes)) = self.populated {
            v["populated"] = json!({"messages": n, "bytes": bytes});
        }
        if let Some((before, peak)) = &self.peak_memory {
            v["peak_memory"] = json!({"anonymous_before": before.anonymous, "anonymous_peak": peak.anonymous, "rss_before": before.rss, "rss_peak": peak.rss});
        }
        v
    }

    /// One `.hgrm` file per operation (and `session.hgrm`).
    pub fn write_hgrm(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut all: Vec<(String, &Histogram<u64>)> = self.rec.ops.iter().map(|(n, h)| (n.to_string(), h)).collect();
        if !self.rec.sessions.is_empty() {
            all.push(("session".into(), &self.rec.sessions));
        }
        for (name, h) in all {
            std::fs::write(dir.join(format!("{}.hgrm", name.replace(' ', "_"))), hgrm(h))?;
        }
        Ok(())
    }

    pub fn write_svg(&self, path: &Path) -> std::io::Result<()> {
        let mut series: Vec<(String, &Histogram<u64>)> = self.rec.ops.iter().map(|(n, h)| (n.to_string(), h)).collect();
        if !self.rec.sessions.is_empty() {
            series.push(("session".into(), &self.rec.sessions));
        }
        std::fs::write(path, svg(&format!("{} against {}", self.scenario, self.target), &series))
    }
}

/// HdrHistogram's percentile distribution text format (values in ms).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:.2}", 1.0 / (1.0 - q)) } else { "inf".into() };
        let _ = writeln!(s, "{:12.3} {:14.12} {:10} {:>14}", v.value_iterated_to() as f64 / 1000.0, q, v.count_since_last_iteration(), inv);
        if q >= 1.0 {
            break;
        }
    }
    let _ = writeln!(s, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / 1000.0, h.stdev() / 1000.0);
    let _ = writeln!(s, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / 1000.0, h.len());
    s
}

/// Latency by percentile, x on the usual 1/(1-p) log scale.
pub fn svg(title: &str, series: &[(String, &Histogram<u64>)]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const L: f64 = 70.0;
    const B: f64 = 50.0;
    const T: f64 = 40.0;
    const R: f64 = 160.0;
    let max_ms = series.iter().map(|(_, h)| h.max() as f64 / 1000.0).fold(0.001, f64::max);
    let x_of = |q: f64| L + (1.0 / (1.0 - q.min(0.99999))).log10() / 5.0 * (W - L - R);
    let y_of = |ms: f64| H - B - ms / max_ms * (H - B - T);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{L}\" y=\"20\" font-size=\"14\">{}</text>", escape(title));
    let _ = writeln!(s, "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", H - B, W - R, H - B);
    let _ = writeln!(s, "<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>", H - B);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let x = L + i as f64 / 5.0 * (W - L - R);
        let _ = writeln!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", H - B + 18.0);
    }
    for i in 0..=4 {
        let ms = max_ms * f64::from(i) / 4.0;
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ms:.2} ms</text>", L - 6.0, y_of(ms) + 4.0);
    }
    for (k, (name, h)) in series.iter().enumerate() {
        let c = colors[k % colors.len()];
        let mut pts = String::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let _ = write!(pts, "{:.1},{:.1} ", x_of(q), y_of(v.value_iterated_to() as f64 / 1000.0));
            if q >= 0.99999 {
                break;
            }
        }
        let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{pts}\"/>");
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>", W - R + 10.0, T + 16.0 * k as f64, escape(name));
    }
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut rec = Recorder::default();
        for i in 1..=100 {
            rec.op("LOGIN", Duration::from_micros(100 * i));
            rec.session(Duration::from_micros(300 * i));
        }
        rec.error("LOGIN", "NO [AUTHENTICATIONFAILED] bad");
        Report {
            scenario: "login",
            target: "127.0.0.1:1".into(),
            threads: 2,
            connections: 4,
            rate: None,
            measured: Duration::from_secs(2),
            rec,
            idle: None,
            client_cpu: Some(Duration::from_millis(500)),
            populated: None,
            peak_memory: None,
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = report().json();
        assert_eq!(v["scenario"], "login");
        assert_eq!(v["sessions_per_sec"], 50.0);
        assert_eq!(v["ops_per_sec"]["LOGIN"], 50.0);
        assert_eq!(v["client_cpu_us_per_unit"], 5000.0, "0.5 s of CPU over 100 sessions");
        assert_eq!(v["errors"], 1);
        let p99 = v["latency_ms"]["session"]["p99"].as_f64().unwrap();
        assert!((29.0..=30.1).contains(&p99), "{p99}");
        assert!(v["latency_ms"]["LOGIN"]["p50"].as_f64().unwrap() > 4.9);
    }

    #[test]
    fn table_hgrm_and_svg_render() {
        let r = report();
        let t = r.table();
        assert!(t.contains("sessions/s 50.0") && t.contains("LOGIN: NO [AUTHENTICATIONFAILED] bad"), "{t}");
        let h = hgrm(&r.rec.sessions);
        assert!(h.starts_with("       Value     Percentile") && h.contains("Total count    =          100"), "{h}");
        let s = svg("t <x>", &[("LOGIN".into(), &r.rec.ops["LOGIN"])]);
        assert!(s.contains("<polyline") && s.contains("t &lt;x&gt;"));
    }
}
