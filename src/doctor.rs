//! `ringmail doctor`: whether this host can run this configuration, and
//! what to change. The kernel settings are those of
//! `kernel-tuning/sysctl.d/90-ringmail.conf` (embedded, so the binary and
//! `check.sh` agree); on top come what only the server knows: io_uring and
//! its opcodes, the open-files limit against the connection cap, the data
//! directory's file system and free space, the ports, workers against
//! cores, the clock, and the TLS certificate.
//!
//! Read-only: nothing is created, bound for longer than the check, or written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, Driver};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Runs, but not as well as it could; the note says what to change.
    Warn,
    /// Cannot run this configuration.
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub recommended: String,
    pub status: Status,
    pub note: String,
}

fn check(name: impl Into<String>, value: impl Into<String>, recommended: impl Into<String>, status: Status, note: impl Into<String>) -> Check {
    Check { name: name.into(), value: value.into(), recommended: recommended.into(), status, note: note.into() }
}

/// The recommended kernel settings, shared with kernel-tuning/check.sh.
pub const SYSCTL_CONF: &str = include_str!("../kernel-tuning/sysctl.d/90-ringmail.conf");

/// One line of the sysctl file: key, value, comparison, importance.
pub struct Sysctl<'a> {
    pub key: &'a str,
    pub want: String,
    pub mode: &'a str,
    pub important: bool,
}

/// Parses the `# check: MODE [important]` / `key = value` pairs.
pub fn sysctls(text: &str) -> Vec<Sysctl<'_>> {
    let mut out = Vec::new();
    let (mut mode, mut important) = ("eq", false);
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("# check:") {
            let mut w = c.split_whitespace();
            mode = w.next().unwrap_or("eq");
            important = w.next() == Some("important");
        } else if !line.starts_with('#') && !line.is_empty() {
            if let Some((k, v)) = line.split_once('=') {
                out.push(Sysctl { key: k.trim(), want: normalize(v), mode, important });
            }
            (mode, important) = ("eq", false);
        }
    }
    out
}

fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `cur` satisfies `want` under `mode` (see the sysctl file).
pub fn sysctl_ok(mode: &str, cur: &str, want: &str) -> bool {
    let nums = |s: &str| s.split_whitespace().map(|x| x.parse::<i64>().ok()).collect::<Option<Vec<_>>>();
    match (mode, nums(cur), nums(want)) {
        ("min", Some(c), Some(w)) if c.len() == 1 && w.len() == 1 => c[0] >= w[0],
        ("max", Some(c), Some(w)) if c.len() == 1 && w.len() == 1 => c[0] <= w[0],
        ("range", Some(c), Some(w)) if c.len() == 2 && w.len() == 2 => c[0] <= w[0] && c[1] >= w[1],
        _ => normalize(cur) == normalize(want),
    }
}

/// Runs every check. `proc_root` is `/` on a real host (tests pass a fake
/// tree holding `proc/sys/...`).
pub fn run(config: &Config, proc_root: &Path) -> Vec<Check> {
    let mut out = vec![cpus(config), io_uring(config, proc_root), open_files(config)];
    out.extend(data_dir(&config.data_dir));
    out.extend(ports(config));
    out.push(clock(&config.data_dir));
    out.push(match config.store.sync {
        crate::config::SyncMode::Always => check("store sync", "always", "always", Status::Ok, "acknowledged mail is on disk"),
        crate::config::SyncMode::Never => {
            check("store sync", "never", "always", Status::Warn, "mail is acknowledged before it is on disk: a crash loses it (benchmarks only)")
        }
    });
    out.push(certificate(config));
    out.push(quota(config));
    out.extend(pop3(config));
    out.extend(cluster(config));
    out.extend(kernel(proc_root));
    out
}

/// POP3's autologout, when POP3 is served: RFC 1939 3 asks for 10 minutes
/// at least.
fn pop3(config: &Config) -> Option<Check> {
    let p = &config.pop3;
    if p.listen.is_empty() && p.pop3s.is_empty() {
        return None;
    }
    let value = format!("{} s", p.idle_timeout.as_secs());
    Some(match p.idle_timeout >= std::time::Duration::from_secs(600) {
        true => check("pop3 autologout", value, ">= 600 s (RFC 1939)", Status::Ok, "[pop3] idle_timeout"),
        false => {
            check("pop3 autologout", value, ">= 600 s (RFC 1939)", Status::Warn, "clients that pause between commands get cut off; raise [pop3] idle_timeout")
        }
    })
}

/// The cluster map, when there is one, and whether each backend answers.
fn cluster(config: &Config) -> Vec<Check> {
    let Some(path) = &config.cluster.file else { return Vec::new() };
    let map = match crate::cluster::ClusterMap::load(path) {
        Ok(m) => m,
        Err(e) => return vec![check("cluster map", path.display().to_string(), "loads", Status::Fail, e)],
    };
    let mut out = vec![check("cluster map", path.display().to_string(), "loads", Status::Ok, format!("{} backends", map.backends().len()))];
    // As the server finds itself (by its IMAP addresses unless configured).
    let me = map.find_self(config.cluster.self_name.as_deref(), &config.imap.listen).ok();
    for b in map.backends() {
        let me = me.as_deref() == Some(b.name.as_str());
        let (status, note) = if me {
            (Status::Ok, "this server".to_string())
        } else {
            match std::net::TcpStream::connect_timeout(&b.imap, std::time::Duration::from_secs(1)) {
                Ok(_) => (Status::Ok, "answers".to_string()),
                Err(e) => (Status::Warn, format!("does not answer ({e}): its users get a temporary error")),
            }
        };
        out.push(check(format!("backend {}", b.name), b.imap.to_string(), "reachable", status, note));
    }
    out.extend(control_ports(config, &map));
    out
}

/// Whether each backend's control port (user moves) answers and knows the
/// cluster's secret, and how many moves this backend knows.
fn control_ports(config: &Config, map: &crate::cluster::ClusterMap) -> Vec<Check> {
    let ports: Vec<_> = map.backends().iter().filter_map(|b| b.control.map(|a| (b, a))).collect();
    if ports.is_empty() {
        return Vec::new();
    }
    let secret = match config.cluster.secret_file.as_deref().map(crate::cluster::control_auth::load_secret) {
        Some(Ok(s)) => s,
        Some(Err(e)) => return vec![check("cluster secret", "[cluster] secret_file", "readable", Status::Fail, e)],
        None => {
            return vec![check(
                "cluster secret",
                "[cluster] secret_file",
                "set",
                Status::Fail,
                "the map names control ports; user moves need the shared secret",
            )]
        }
    };
    let mut out = Vec::new();
    for (b, addr) in ports {
        let (status, note) = match crate::migrate::control_port::ControlClient::connect(addr, &secret, std::time::Duration::from_secs(1)) {
            Ok(_) => (Status::Ok, "answers and knows the secret".to_string()),
            Err(e) => (Status::Warn, format!("{e}: users cannot move to or from it")),
        };
        out.push(check(format!("control port of {}", b.name), addr.to_string(), "reachable", status, note));
    }
    let file = config.data_dir.join(crate::cluster::moves::FILE);
    let moves = std::fs::read_to_string(&file).ok().and_then(|t| crate::cluster::Moves::parse(&t).ok()).unwrap_or_default();
    out.push(check("moved users", file.display().to_string(), "-", Status::Ok, format!("{} known here", moves.len())));
    out
}

/// The default quota, how many users set their own, and rules in the
/// passwd-file that ringmail does not apply (it applies only whole-account
/// `*` rules of storage, bytes and messages).
fn quota(config: &Config) -> Check {
    let default = config.quota.limits();
    let show = |l: Option<u64>, unit: &str| l.map_or("unlimited".to_string(), |n| format!("{n}{unit}"));
    let mut value = format!("default storage {}, messages {}", show(default.storage, " B"), show(default.messages, ""));
    let text = match std::fs::read_to_string(config.users_file()) {
        Ok(t) => t,
        Err(_) => return check("quota", value, "-", Status::Ok, "no passwd-file yet"),
    };
    let mut own = 0;
    let mut ignored = Vec::new();
    for e in crate::auth::passwd::parse(&text).0 {
        let q = crate::auth::quota_rule::parse(&e.rest);
        own += usize::from(!q.is_empty());
        ignored.extend(q.ignored.into_iter().map(|r| format!("{}: {r}", e.name)));
    }
    value.push_str(&format!("; {own} user(s) with their own"));
    if ignored.is_empty() {
        return check("quota", value, "-", Status::Ok, "");
    }
    let note = format!("ignored quota rules (only *:storage/bytes/messages apply): {}", ignored.join(", "));
    check("quota", value, "whole-account rules", Status::Warn, note)
}

/// Non-zero when something cannot run.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.status == Status::Fail))
}

pub fn table(checks: &[Check]) -> String {
    let mut s = format!("{:<32} {:<36} {:<24} {:<6} {}\n", "CHECK", "VALUE", "RECOMMENDED", "STATUS", "NOTE");
    for c in checks {
        let status = match c.status {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        s.push_str(&format!("{:<32} {:<36} {:<24} {:<6} {}\n", c.name, c.value, c.recommended, status, c.note));
    }
    let (warn, fail) = (checks.iter().filter(|c| c.status == Status::Warn).count(), checks.iter().filter(|c| c.status == Status::Fail).count());
    s.push_str(&match (fail, warn) {
        (0, 0) => "\nThis host can run this configuration as recommended.\n".to_string(),
        (0, w) => format!("\nThis host can run this configuration; {w} warning(s).\n"),
        (f, _) => format!("\n{f} check(s) failed: this host cannot run this configuration as it is.\n"),
    });
    s
}

pub fn json(checks: &[Check]) -> String {
    let v = serde_json::json!({ "ok": exit_code(checks) == 0, "checks": checks });
    serde_json::to_string_pretty(&v).expect("checks serialize")
}

fn cpus(config: &Config) -> Check {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = config.worker_count();
    let (status, note) = if workers > cpus {
        (Status::Warn, format!("{workers} workers on {cpus} cores: pinned workers share cores; set workers = 0 (one per core)"))
    } else if workers < cpus {
        (Status::Ok, format!("{} core(s) left for interrupts and other services", cpus - workers))
    } else {
        (Status::Ok, "one pinned worker per core".to_string())
    };
    check("workers / cores", format!("{workers} / {cpus}"), format!("{cpus} / {cpus}"), status, note)
}

fn read_sysctl(proc_root: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(proc_root.join("proc/sys").join(key.replace('.', "/"))).ok().map(|v| normalize(&v))
}

fn io_uring(config: &Config, proc_root: &Path) -> Check {
    let disabled = read_sysctl(proc_root, "kernel.io_uring_disabled").unwrap_or_else(|| "absent".into());
    let probed = probe_io_uring();
    let (value, status, note) = match (&probed, config.driver) {
        (Ok(missing), _) if missing.is_empty() => ("available".to_string(), Status::Ok, "every operation ringmail uses is supported".to_string()),
        (Ok(missing), _) => ("available".to_string(), Status::Warn, format!("kernel lacks {}: those fall back to slower paths", missing.join(", "))),
        (Err(e), Driver::Uring) => ("unavailable".to_string(), Status::Fail, format!("driver = \"uring\" but {e}; use driver = \"auto\" or enable io_uring")),
        (Err(e), _) => ("unavailable".to_string(), Status::Warn, format!("{e}: ringmail runs on the epoll fallback")),
    };
    check("io_uring", format!("{value} (io_uring_disabled={disabled})"), "available", status, note)
}

/// The opcodes the monoio driver issues, missing ones by name; Err if no ring.
fn probe_io_uring() -> Result<Vec<&'static str>, String> {
    use io_uring::opcode;
    let ring = io_uring::IoUring::new(4).map_err(|e| format!("io_uring_setup failed ({e})"))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| format!("cannot probe io_uring ({e})"))?;
    let needed = [
        (opcode::Accept::CODE, "accept"),
        (opcode::Connect::CODE, "connect"),
        (opcode::Read::CODE, "read"),
        (opcode::Write::CODE, "write"),
        (opcode::Writev::CODE, "writev"),
        (opcode::Recv::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::PollAdd::CODE, "poll_add"),
        (opcode::Close::CODE, "close"),
        (opcode::Fsync::CODE, "fsync"),
        (opcode::Timeout::CODE, "timeout"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
    ];
    Ok(needed.iter().filter(|(code, _)| !probe.is_supported(*code)).map(|(_, n)| *n).collect())
}

fn open_files(config: &Config) -> Check {
    use crate::net::fdlimit::{connection_cap, RESERVED};
    let want = config.limits.max_connections as u64 + RESERVED;
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let shown = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    // The server raises the soft limit to the hard one at start.
    let usable = lim.maximum.unwrap_or(u64::MAX);
    let cap = connection_cap(config.limits.max_connections, usable);
    let value = format!("soft {} / hard {}", shown(lim.current), shown(lim.maximum));
    if cap == 0 {
        check("open files (RLIMIT_NOFILE)", value, format!(">= {want}"), Status::Fail, format!("fewer than {RESERVED} descriptors: no room for connections"))
    } else if cap < config.limits.max_connections {
        check(
            "open files (RLIMIT_NOFILE)",
            value,
            format!(">= {want}"),
            Status::Warn,
            format!("max_connections {} will be lowered to {cap}; raise LimitNOFILE (and fs.nr_open)", config.limits.max_connections),
        )
    } else {
        check("open files (RLIMIT_NOFILE)", value, format!(">= {want}"), Status::Ok, format!("room for max_connections = {}", config.limits.max_connections))
    }
}

/// The nearest existing ancestor (the data directory may not exist yet).
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
    abs.ancestors().find(|a| a.exists()).map(Path::to_path_buf)
}

fn data_dir(dir: &Path) -> Vec<Check> {
    let shown = dir.display().to_string();
    let Some(base) = existing_ancestor(dir) else {
        return vec![check("data directory", shown, "writable", Status::Fail, "no existing parent directory")];
    };
    if !base.is_dir() {
        return vec![check("data directory", shown, "writable", Status::Fail, format!("{} is not a directory", base.display()))];
    }
    let writable = rustix::fs::access(&base, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK).is_ok();
    let mut out = vec![if writable {
        let how = if base == dir || dir.exists() { "exists" } else { "will be created" };
        check("data directory", shown.clone(), "writable", Status::Ok, format!("{how}, writable"))
    } else {
        check("data directory", shown.clone(), "writable", Status::Fail, format!("{} is not writable by this user", base.display()))
    }];
    if let Ok(fs) = rustix::fs::statfs(&base) {
        let (name, status, note) = match fs.f_type as u64 {
            0xEF53 => ("ext4/ext3", Status::Ok, "fdatasync and mmap behave as the store expects"),
            0x5846_5342 => ("xfs", Status::Ok, "fdatasync and mmap behave as the store expects"),
            0x9123_683E => ("btrfs", Status::Ok, "works; copy-on-write makes syncs slower than ext4/xfs"),
            0x2FC1_2FC1 => ("zfs", Status::Ok, "works; keep sync=standard on the dataset"),
            0x0102_1994 => ("tmpfs", Status::Warn, "mail in RAM is lost at reboot"),
            0x794C_7630 => ("overlayfs", Status::Warn, "a container layer: put the data directory on a volume"),
            0x6969 => ("nfs", Status::Warn, "network file systems weaken fdatasync and mmap coherence; use local disk"),
            _ => ("other", Status::Warn, "untested file system"),
        };
        out.push(check("data file system", format!("{name} (0x{:X})", fs.f_type), "ext4 or xfs", status, note));
    }
    if let Some((free, total)) = crate::datadir::disk_space(&base) {
        let total = total.max(1);
        let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
        let pct = free * 100 / total;
        let (status, note) = if free < 100 << 20 {
            (Status::Fail, "under 100 MiB: APPEND and deliveries will soon be refused (NO [OVERQUOTA], 452 4.3.1)".to_string())
        } else if free < 1 << 30 || pct < 5 {
            (Status::Warn, format!("{pct}% free"))
        } else {
            (Status::Ok, format!("{pct}% free"))
        };
        out.push(check("data free space", format!("{} of {}", gib(free), gib(total)), ">= 1 GiB and 5%", status, note));
    }
    if dir.exists() {
        // Mail, password hashes and keys: nobody but the server's user (and,
        // for directories an operator made 0750, its group) may read them.
        let loose = crate::datadir::loose_permissions(dir, 20_000);
        out.push(match loose.first() {
            None => check("data permissions", "private", "no access for other users", Status::Ok, "files 0600, directories 0700 (or 0750)"),
            Some((p, mode)) => check(
                "data permissions",
                format!("{} path(s) too open, e.g. {} {mode:o}", loose.len(), p.display()),
                "no access for other users",
                Status::Warn,
                format!("chmod -R go-rwx {} (then 0750 on the directory if a group needs it)", dir.display()),
            ),
        });
    }
    out
}

fn ports(config: &Config) -> Vec<Check> {
    let mut want: Vec<(&str, SocketAddr)> = Vec::new();
    want.extend(config.imap.listen.iter().map(|a| ("imap", *a)));
    want.extend(config.imap.imaps.iter().map(|a| ("imaps", *a)));
    want.extend(config.imap.preauth.iter().map(|p| ("imap preauth", p.listen)));
    want.extend(config.lmtp.listen.iter().map(|a| ("lmtp", *a)));
    want.extend(config.smtp.listen.iter().map(|a| ("smtp", *a)));
    want.extend(config.pop3.listen.iter().map(|a| ("pop3", *a)));
    want.extend(config.pop3.pop3s.iter().map(|a| ("pop3s", *a)));
    want.extend(config.metrics.listen.iter().map(|a| ("metrics", *a)));
    let running = crate::datadir::published_lmtp(&config.data_dir).is_some();
    want.into_iter()
        .map(|(what, addr)| {
            let name = format!("port {what}");
            match std::net::TcpListener::bind(addr) {
                Ok(_) => check(name, addr.to_string(), "bindable", Status::Ok, "free"),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && running => {
                    check(name, addr.to_string(), "bindable", Status::Warn, "in use, probably by the ringmail already running on this data directory")
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => check(
                    name,
                    addr.to_string(),
                    "bindable",
                    Status::Fail,
                    "permission denied: ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit grants it)",
                ),
                Err(e) => check(name, addr.to_string(), "bindable", Status::Fail, format!("cannot bind: {e}")),
            }
        })
        .collect()
}

fn clock(data_dir: &Path) -> Check {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // 2024-01-01: no real clock is earlier than this binary.
    if secs < 1_704_067_200 {
        return check("clock", format!("{secs} s since 1970"), "set (NTP)", Status::Fail, "the clock is not set: INTERNALDATE and Date headers would be wrong");
    }
    let newest = std::fs::read_dir(data_dir.join("mail"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .chain(std::fs::metadata(data_dir.join("users")).ok().and_then(|m| m.modified().ok()))
        .max();
    match newest.and_then(|t| t.duration_since(now).ok()) {
        Some(ahead) if ahead.as_secs() > 3600 => check(
            "clock",
            crate::delivery::rfc5322_date(secs as i64),
            "not behind the data",
            Status::Warn,
            format!("data directory files are {} h in the future: did the clock jump back?", ahead.as_secs() / 3600),
        ),
        _ => check("clock", crate::delivery::rfc5322_date(secs as i64), "set (NTP)", Status::Ok, "plausible, not behind the data"),
    }
}

fn certificate(config: &Config) -> Check {
    match (&config.tls.cert, &config.tls.key) {
        (None, None) => {
            let generated = config.data_dir.join("tls/cert.pem");
            let note = if generated.exists() {
                "self-signed (generated); clients must be told to trust it"
            } else {
                "none: a self-signed one is generated at first start"
            };
            check("TLS certificate", generated.display().to_string(), "a CA-signed certificate", Status::Warn, note)
        }
        (Some(c), Some(_)) => {
            let t = crate::certs::Certs::load(config).map(|t| t.current().fingerprint.clone());
            match t {
                Ok(fp) => check("TLS certificate", c.display().to_string(), "loads", Status::Ok, format!("SHA-256 {}", &fp[..23])),
                Err(e) => check("TLS certificate", c.display().to_string(), "loads", Status::Fail, e),
            }
        }
        _ => check("TLS certificate", "cert or key missing", "both", Status::Fail, "tls.cert and tls.key go together"),
    }
}

fn kernel(proc_root: &Path) -> Vec<Check> {
    sysctls(SYSCTL_CONF)
        .into_iter()
        .filter(|s| s.key != "kernel.io_uring_disabled")
        .map(|s| {
            let rec = format!("{} ({})", s.want, s.mode);
            match read_sysctl(proc_root, s.key) {
                None => check(s.key, "absent", rec, Status::Ok, "not in this kernel"),
                Some(cur) if sysctl_ok(s.mode, &cur, &s.want) => check(s.key, cur, rec, Status::Ok, ""),
                Some(cur) => {
                    let note = if s.important { "important: kernel-tuning/apply.sh" } else { "kernel-tuning/apply.sh" };
                    check(s.key, cur, rec, Status::Warn, note)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sysctl_file_parses_with_modes() {
        let all = sysctls(SYSCTL_CONF);
        let somax = all.iter().find(|s| s.key == "net.core.somaxconn").unwrap();
        assert_eq!((somax.want.as_str(), somax.mode, somax.important), ("65535", "min", true));
        let range = all.iter().find(|s| s.key == "net.ipv4.ip_local_port_range").unwrap();
        assert_eq!((range.mode, range.important), ("range", false));
        assert!(all.len() >= 10);
    }

    #[test]
    fn comparisons() {
        assert!(sysctl_ok("min", "70000", "65535"));
        assert!(!sysctl_ok("min", "4096", "65535"));
        assert!(sysctl_ok("max", "0", "0"));
        assert!(!sysctl_ok("max", "2", "0"));
        assert!(sysctl_ok("range", "1024 65535", "10240 65535"));
        assert!(!sysctl_ok("range", "32768\t60999", "10240 65535"));
        assert!(sysctl_ok("eq", "4096\t16384  4194304", "4096 16384 4194304"));
    }
}
