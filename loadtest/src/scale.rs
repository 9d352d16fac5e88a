//! `ringmail-load scale`: how command times grow with the size of one
//! mailbox (issue 19). For each size N, a mailbox `scale-N` is filled with
//! N corpus messages (MULTIAPPEND in batches, or, for a server given a
//! Maildir, message files written straight into its folder so that the
//! server indexes them itself), then each command is timed on one
//! connection: the median of `repeat` runs after one unmeasured run, and
//! the mutating ones (STORE, COPY, MOVE, EXPUNGE, APPEND) undone or made up
//! for afterwards, unmeasured, so every size keeps N messages. The result
//! is a table per command and a log-log plot (SVG) of time against N.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::commands::Session;

/// One server to measure.
pub struct Server {
    pub name: String,
    pub target: std::net::SocketAddr,
    /// Its process (and children), for anonymous memory after each size.
    pub pid: Option<Pid>,
    /// The user's Maildir (Dovecot's Maildir++ layout): messages are
    /// written there instead of appended.
    pub maildir: Option<PathBuf>,
    /// A shell command that restarts the server and returns once it is
    /// started, for the time to open a mailbox after a restart.
    pub restart: Option<String>,
    /// The largest size this server is measured at.
    pub up_to: u64,
}

/// Where a server's process id is: given, or read from a pid file each time
/// (the process changes when the server is restarted).
pub enum Pid {
    Fixed(u32),
    File(PathBuf),
}

impl Pid {
    fn get(&self) -> Result<u32, String> {
        match self {
            Pid::Fixed(pid) => Ok(*pid),
            Pid::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                text.trim().parse().map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// One measurement.
pub struct Point {
    pub server: String,
    pub size: u64,
    pub command: String,
    pub time: Duration,
}

/// Memory of a server after the commands at one size.
pub struct Memory {
    pub server: String,
    pub size: u64,
    pub anonymous: u64,
}

/// What is measured, in order. `{mailbox}` is the mailbox, `{tenth}` a
/// tenth of its size, `{k}` min(10,000, size), `{last50}` the 50th message
/// from the end.
const COMMANDS: &[&str] = &[
    "SELECT",
    "STATUS {mailbox} (MESSAGES UIDNEXT UNSEEN)",
    "FETCH 1:* (UID FLAGS)",
    "FETCH {last50}:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
    "UID SEARCH ALL",
    "UID SEARCH UNSEEN",
    "UID SEARCH FROM nobody-matches-this",
    "UID SEARCH SUBJECT nobody-matches-this",
    "UID SEARCH SINCE 1-Jan-2030",
    "UID SEARCH TEXT nobody-matches-this",
    "STORE 1:* ±FLAGS.SILENT (\\Flagged)",
    "STORE 1:{tenth} ±FLAGS.SILENT (\\Answered)",
    "NOOP",
    "APPEND one message",
    "COPY 1:{k}",
    "MOVE 1:{k}",
    "EXPUNGE 1:{tenth}",
    AFTER_RESTART,
];

/// The first SELECT after the server was restarted (`Server::restart`):
/// the time to open the mailbox from disk.
const AFTER_RESTART: &str = "SELECT after a restart";

/// A command whose unmeasured run takes longer than this is measured once
/// more only (SEARCH TEXT over a million messages).
const SLOW: Duration = Duration::from_secs(2);

/// The command names with `{…}` filled in for size `n`.
fn command_for(template: &str, n: u64) -> String {
    template
        .replace("{mailbox}", &mailbox_of(n))
        .replace("{tenth}", &(n / 10).max(1).to_string())
        .replace("{k}", &n.min(10_000).to_string())
        .replace("{last50}", &n.saturating_sub(49).max(1).to_string())
}

/// The mailbox of size `n`.
fn mailbox_of(n: u64) -> String {
    format!("scale-{n}")
}

/// Messages per MULTIAPPEND when filling a mailbox.
const APPEND_BATCH: u64 = 500;

/// Runs every size against every server; progress goes to stderr.
pub fn run(servers: &[Server], user: &str, password: &str, sizes: &[u64], repeat: usize, timeout: Duration) -> Result<(Vec<Point>, Vec<Memory>), String> {
    let mut points = Vec::new();
    let mut memory = Vec::new();
    for &n in sizes {
        for server in servers.iter().filter(|s| n <= s.up_to) {
            let mut s = Session::login(server.target, user, password, timeout)?;
            let mailbox = mailbox_of(n);
            let filled = Instant::now();
            fill(&mut s, server, &mailbox, n)?;
            eprintln!("{}: {mailbox} holds {n} messages ({:.1} s to fill)", server.name, filled.elapsed().as_secs_f64());
            for template in COMMANDS.iter().filter(|t| **t != AFTER_RESTART) {
                let time = measure(&mut s, &mailbox, template, n, repeat)?;
                eprintln!("{}: {n} {}: {:.2} ms", server.name, command_for(template, n), time.as_secs_f64() * 1000.0);
                points.push(Point { server: server.name.clone(), size: n, command: template.to_string(), time });
            }
            // What EXPUNGE took away comes back, so a rerun finds N.
            fill(&mut s, server, &mailbox, n)?;
            let _ = s.run("LOGOUT");
            if let Some(pid) = &server.pid {
                let pid = pid.get()?;
                let m = crate::procmem::measure(&[pid], true).map_err(|e| format!("memory of {pid}: {e}"))?;
                memory.push(Memory { server: server.name.clone(), size: n, anonymous: m.anonymous });
            }
            if let Some(command) = &server.restart {
                let time = open_after_restart(server, command, user, password, &mailbox, timeout)?;
                eprintln!("{}: {n} {AFTER_RESTART}: {:.2} ms", server.name, ms(time));
                points.push(Point { server: server.name.clone(), size: n, command: AFTER_RESTART.to_string(), time });
            }
        }
    }
    Ok((points, memory))
}

/// Runs the restart command, waits until the server takes a login again,
/// and times the first SELECT of `mailbox`.
fn open_after_restart(server: &Server, command: &str, user: &str, password: &str, mailbox: &str, timeout: Duration) -> Result<Duration, String> {
    let status = std::process::Command::new("sh").arg("-c").arg(command).status().map_err(|e| format!("{command}: {e}"))?;
    if !status.success() {
        return Err(format!("{command}: {status}"));
    }
    let deadline = Instant::now() + timeout;
    let mut s = loop {
        match Session::login(server.target, user, password, timeout) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => return Err(format!("{} after a restart: {e}", server.name)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let t = Instant::now();
    s.run(&format!("SELECT {}", crate::conn::quote(mailbox)))?;
    let time = t.elapsed();
    let _ = s.run("LOGOUT");
    Ok(time)
}

/// Brings `mailbox` to at least `n` messages.
fn fill(s: &mut Session, server: &Server, mailbox: &str, n: u64) -> Result<(), String> {
    let quoted = crate::conn::quote(mailbox);
    let _ = s.run(&format!("CREATE {quoted}"));
    let have = s.status_messages(mailbox)?;
    if have >= n {
        return Ok(());
    }
    match &server.maildir {
        Some(dir) => write_maildir(&dir.join(format!(".{mailbox}")), have, n),
        None => {
            let mut i = have;
            while i < n {
                let batch: Vec<Vec<u8>> = (i..n.min(i + APPEND_BATCH)).map(|k| ringmail_kit::corpus::message(19, k + 1)).collect();
                s.multiappend(mailbox, &batch)?;
                i += batch.len() as u64;
            }
            Ok(())
        }
    }
}

/// Writes messages `from..n` as Maildir files into `folder/cur` (seen by
/// the server at its next look at the folder), owned by the folder's owner
/// (the server's mail user, when the server made the folder).
fn write_maildir(folder: &Path, from: u64, n: u64) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub)).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    let owner = std::fs::metadata(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for k in from..n {
        let m = ringmail_kit::corpus::message(19, k + 1);
        let name = format!("{stamp}.M{k}P{}.ringmail-scale,S={}:2,", std::process::id(), m.len());
        let path = folder.join("cur").join(name);
        std::fs::write(&path, &m).map_err(|e| format!("{}: {e}", path.display()))?;
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The median time of one command at size `n`, after an unmeasured run;
/// mutating commands are undone after each run, unmeasured.
fn measure(s: &mut Session, mailbox: &str, template: &str, n: u64, repeat: usize) -> Result<Duration, String> {
    let quoted = crate::conn::quote(mailbox);
    let scratch = crate::conn::quote(&format!("{mailbox}-scratch"));
    let command = command_for(template, n);
    let mut runs = Vec::new();
    // Expensive and mutating: once.
    let once = template.starts_with("COPY") || template.starts_with("MOVE") || template.starts_with("EXPUNGE");
    let rounds = if once { 1 } else { repeat.max(1) + 1 };
    let mut slow = false;
    s.run(&format!("SELECT {quoted}"))?;
    for round in 0..rounds {
        if slow && round == 2 {
            break;
        }
        let t;
        match template {
            "SELECT" => {
                t = Instant::now();
                s.run(&format!("SELECT {quoted}"))?;
            }
            "APPEND one message" => {
                let m = ringmail_kit::corpus::message(23, round as u64 + 1);
                t = Instant::now();
                s.multiappend(mailbox, &[m])?;
            }
            _ if template.starts_with("STORE") => {
                // Alternately set and clear, so every run changes every message.
                let sign = if round % 2 == 0 { "+" } else { "-" };
                t = Instant::now();
                s.run(&command.replace('±', sign))?;
            }
            _ if template.starts_with("COPY") || template.starts_with("MOVE") => {
                let _ = s.run(&format!("CREATE {scratch}"));
                t = Instant::now();
                s.run(&format!("{command} {scratch}"))?;
                let elapsed = t.elapsed();
                if template.starts_with("MOVE") {
                    // Back again (with new UIDs), unmeasured.
                    s.run(&format!("SELECT {scratch}"))?;
                    s.run(&format!("MOVE 1:* {quoted}"))?;
                    s.run(&format!("SELECT {quoted}"))?;
                }
                s.run(&format!("DELETE {scratch}"))?;
                runs.push(elapsed);
                continue;
            }
            _ if template.starts_with("EXPUNGE") => {
                s.run(&format!("STORE 1:{} +FLAGS.SILENT (\\Deleted)", (n / 10).max(1)))?;
                t = Instant::now();
                s.run("EXPUNGE")?;
            }
            _ => {
                t = Instant::now();
                s.run(&command)?;
            }
        }
        let elapsed = t.elapsed();
        if round > 0 || once {
            runs.push(elapsed);
        } else {
            slow = elapsed > SLOW;
        }
    }
    runs.sort_unstable();
    Ok(runs[runs.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A table: one row per command and size, a column per server, and the
/// ratio of the others to the first server when there are several.
pub fn table(points: &[Point], memory: &[Memory], servers: &[String], sizes: &[u64]) -> String {
    let mut out = format!("{:<48} {:>9}", "command", "N");
    for s in servers {
        out.push_str(&format!(" {:>12}", format!("{s} ms")));
    }
    for s in servers.iter().skip(1) {
        out.push_str(&format!(" {:>10}", format!("{s}/{}", servers[0])));
    }
    out.push('\n');
    let time = |server: &str, size: u64, command: &str| points.iter().find(|p| p.server == server && p.size == size && p.command == command).map(|p| p.time);
    for template in COMMANDS {
        for &n in sizes {
            out.push_str(&format!("{:<48} {n:>9}", command_for(template, n)));
            for s in servers {
                out.push_str(&format!(" {:>12}", time(s, n, template).map_or("-".into(), |d| format!("{:.3}", ms(d)))));
            }
            for s in servers.iter().skip(1) {
                let ratio = time(s, n, template).zip(time(&servers[0], n, template)).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9));
                out.push_str(&format!(" {:>10}", ratio.map_or("-".into(), |r| format!("{r:.1}"))));
            }
            out.push('\n');
        }
    }
    if !memory.is_empty() {
        out.push_str("\nanonymous memory after the commands (MiB)\n");
        for m in memory {
            out.push_str(&format!("{:<12} {:>9} {:>10.1}\n", m.server, m.size, m.anonymous as f64 / (1 << 20) as f64));
        }
    }
    out
}

/// A log-log plot of time against N, one panel per command, one line per
/// server.
pub fn svg(points: &[Point], servers: &[String], sizes: &[u64]) -> String {
    const COLS: usize = 4;
    const W: f64 = 260.0;
    const H: f64 = 190.0;
    const PAD: f64 = 46.0;
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let rows = COMMANDS.len().div_ceil(COLS);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        W * COLS as f64,
        H * rows as f64 + 24.0
    );
    for (i, s) in servers.iter().enumerate() {
        out.push_str(&format!(
            "<text x=\"{}\" y=\"16\" fill=\"{}\" font-size=\"12\">{}</text>\n",
            10.0 + 140.0 * i as f64,
            colors[i % colors.len()],
            escape(s)
        ));
    }
    out.push_str(&format!(
        "<text x=\"{}\" y=\"16\" fill=\"#555\">time against N, the messages in the mailbox (log-log)</text>\n",
        10.0 + 140.0 * servers.len() as f64
    ));
    let (xmin, xmax) = (sizes.iter().copied().min().unwrap_or(1).max(1) as f64, sizes.iter().copied().max().unwrap_or(10).max(2) as f64);
    for (c, template) in COMMANDS.iter().enumerate() {
        let (ox, oy) = (W * (c % COLS) as f64, 24.0 + H * (c / COLS) as f64);
        let ys: Vec<f64> = points.iter().filter(|p| p.command == *template).map(|p| ms(p.time).max(1e-3)).collect();
        let (ymin, ymax) = (ys.iter().copied().fold(f64::MAX, f64::min).min(1.0), ys.iter().copied().fold(0.0, f64::max).max(10.0));
        // Whole decades on the time axis.
        let (ylo, yhi) = (ymin.log10().floor(), ymax.log10().ceil());
        let (xlo, xhi) = (xmin.log10(), xmax.log10().max(xmin.log10() + 1.0));
        let px = |x: f64| ox + PAD + (x.log10() - xlo) / (xhi - xlo) * (W - PAD - 12.0);
        let py = |y: f64| oy + H - PAD + 8.0 - (y.log10() - ylo) / (yhi - ylo).max(1.0) * (H - PAD - 20.0);
        out.push_str(&format!("<text x=\"{}\" y=\"{}\" font-size=\"10\">{}</text>\n", ox + 8.0, oy + 12.0, escape(&title(template))));
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n",
            ox + PAD,
            oy + 20.0,
            W - PAD - 12.0,
            H - PAD - 12.0
        ));
        let mut d = ylo;
        while d <= yhi {
            let y = py(10f64.powf(d));
            out.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{}</text>\n", ox + PAD - 3.0, y + 3.0, decade(d, "ms")));
            d += 1.0;
        }
        for &n in sizes {
            out.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n", px(n as f64), oy + H - 4.0, short(n)));
        }
        for (i, s) in servers.iter().enumerate() {
            let line: Vec<String> = sizes
                .iter()
                .filter_map(|&n| points.iter().find(|p| &p.server == s && p.size == n && p.command == *template))
                .map(|p| format!("{:.1},{:.1}", px(p.size as f64), py(ms(p.time).max(1e-3))))
                .collect();
            let color = colors[i % colors.len()];
            out.push_str(&format!("<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>\n", line.join(" ")));
            for pt in &line {
                let (x, y) = pt.split_once(',').unwrap_or(("0", "0"));
                out.push_str(&format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>\n"));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// A panel's title: the command with its size-dependent parts named, cut
/// to fit.
fn title(template: &str) -> String {
    let t = template.replace("{mailbox} ", "").replace("{tenth}", "N/10").replace("{k}", "10k").replace("{last50}", "N-49");
    match t.char_indices().nth(44) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

/// A power of ten as a short label: 0.01, 0.1, 1, 10, 100, 1k... `unit`.
fn decade(d: f64, unit: &str) -> String {
    let v = 10f64.powf(d);
    if v < 1.0 {
        format!("{v} {unit}")
    } else if v < 1000.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{:.0} s", v / 1000.0)
    }
}

fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_filled_in_for_a_size() {
        assert_eq!(command_for("FETCH {last50}:* (UID)", 1000), "FETCH 951:* (UID)");
        assert_eq!(command_for("STORE 1:{tenth} ±FLAGS.SILENT (\\Answered)", 5), "STORE 1:1 ±FLAGS.SILENT (\\Answered)");
        assert_eq!(command_for("COPY 1:{k}", 1_000_000), "COPY 1:10000");
    }

    #[test]
    fn the_table_and_the_plot_hold_every_point() {
        let servers = vec!["ringmail".to_string(), "dovecot".to_string()];
        let sizes = [1000, 10_000];
        let mut points = Vec::new();
        for (k, s) in servers.iter().enumerate() {
            for &n in &sizes {
                for c in COMMANDS {
                    points.push(Point { server: s.clone(), size: n, command: c.to_string(), time: Duration::from_micros(n * (k as u64 + 1)) });
                }
            }
        }
        let t = table(&points, &[], &servers, &sizes);
        let row: Vec<&str> = t.lines().find(|l| l.starts_with("FETCH 1:* (UID FLAGS)") && l.contains("10000")).expect("a row").split_whitespace().collect();
        assert_eq!(row[row.len() - 4..], ["10000", "10.000", "20.000", "2.0"], "{t}");
        let plot = svg(&points, &servers, &sizes);
        assert_eq!(plot.matches("<polyline").count(), COMMANDS.len() * 2);
        assert!(plot.contains("10k") && plot.ends_with("</svg>\n"));
    }
}
