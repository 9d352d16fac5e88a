//! kernel-tuning/ scripts and `ringmail doctor` on fake /proc/sys trees
//! (tuned and untuned hosts), the production example config, and the
//! systemd readiness notification. Nothing here touches the real machine.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ringmail::doctor::{sysctls, SYSCTL_CONF};

fn tuning(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-tuning").join(script)
}

fn run(cmd: &mut Command) -> (i32, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

fn sysctl_path(root: &Path, key: &str) -> PathBuf {
    root.join("proc/sys").join(key.replace('.', "/"))
}

/// A value that fails the check, for an untuned host.
fn off_value(mode: &str, want: &str) -> String {
    let n: Vec<i64> = want.split_whitespace().map(|x| x.parse().unwrap()).collect();
    match mode {
        "min" => (n[0] / 16).to_string(),
        "max" => (n[0] + 1).to_string(),
        "range" => "32768\t60999".to_string(),
        _ => std::iter::once(n[0] + 1).chain(n[1..].iter().copied()).map(|x| x.to_string()).collect::<Vec<_>>().join("\t"),
    }
}

/// A fake root with every setting tuned, or every one off.
fn fake_host(tuned: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for s in sysctls(SYSCTL_CONF) {
        let p = sysctl_path(dir.path(), s.key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let v = if tuned { s.want.clone() } else { off_value(s.mode, &s.want) };
        std::fs::write(p, format!("{v}\n")).unwrap();
    }
    dir
}

fn snapshot(root: &Path) -> Vec<(String, String)> {
    sysctls(SYSCTL_CONF).iter().map(|s| (s.key.to_string(), std::fs::read_to_string(sysctl_path(root, s.key)).unwrap())).collect()
}

#[test]
fn check_passes_a_tuned_host_and_fails_an_untuned_one() {
    let tuned = fake_host(true);
    let (code, out) = run(Command::new(tuning("check.sh")).arg("--root").arg(tuned.path()));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("All settings as recommended."), "{out}");

    let untuned = fake_host(false);
    let before = snapshot(untuned.path());
    let (code, out) = run(Command::new(tuning("check.sh")).arg("--root").arg(untuned.path()));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("net.core.somaxconn") && out.contains("CHANGE (important)"), "{out}");
    let rows = out.lines().filter(|l| l.contains("CHANGE")).count();
    assert_eq!(rows, sysctls(SYSCTL_CONF).len(), "{out}");
    assert_eq!(snapshot(untuned.path()), before, "check.sh changes nothing");
}

#[test]
fn apply_dry_run_changes_nothing_then_apply_and_revert_round_trip() {
    let host = fake_host(false);
    let root = host.path();
    let before = snapshot(root);
    let (code, out) = run(Command::new(tuning("apply.sh")).args(["--dry-run", "--root"]).arg(root));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("echo '65535' > '{}'", sysctl_path(root, "net.core.somaxconn").display())), "{out}");
    assert!(out.contains("# dry run: nothing was changed"), "{out}");
    assert_eq!(snapshot(root), before, "dry run changed nothing");
    assert!(!root.join("etc").exists() && !root.join("var").exists(), "dry run created nothing");

    let (code, out) = run(Command::new(tuning("apply.sh")).arg("--root").arg(root));
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(Command::new(tuning("check.sh")).arg("--root").arg(root));
    assert_eq!(code, 0, "tuned after apply: {out}");
    assert!(root.join("etc/sysctl.d/90-ringmail.conf").exists() && root.join("etc/security/limits.d/90-ringmail.conf").exists());
    let backup = std::fs::read_to_string(root.join("var/lib/ringmail-tuning/latest")).unwrap();
    assert!(backup.contains("net.core.somaxconn = 4095"), "{backup}");

    let (code, out) = run(Command::new(tuning("revert.sh")).arg("--root").arg(root));
    assert_eq!(code, 0, "{out}");
    let normalized = |v: Vec<(String, String)>| v.into_iter().map(|(k, v)| (k, v.split_whitespace().collect::<Vec<_>>().join(" "))).collect::<Vec<_>>();
    assert_eq!(normalized(snapshot(root)), normalized(before), "revert restores every value");
    assert!(!root.join("etc/sysctl.d/90-ringmail.conf").exists());
}

#[test]
fn irq_affinity_spreads_queues_and_is_a_dry_run_by_default() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("proc")).unwrap();
    std::fs::write(r.join("proc/interrupts"), "           CPU0       CPU1\n 24:  1  0  PCI-MSI  eth0-TxRx-0\n 25:  1  0  PCI-MSI  eth0-TxRx-1\n 26:  1  0  PCI-MSI  eth0-TxRx-2\n 30: 5 5 PCI-MSI nvme0q1\n").unwrap();
    for irq in [24, 25, 26, 30] {
        std::fs::create_dir_all(r.join(format!("proc/irq/{irq}"))).unwrap();
        std::fs::write(r.join(format!("proc/irq/{irq}/smp_affinity_list")), "0\n").unwrap();
    }
    std::fs::create_dir_all(r.join("sys/devices/system/cpu")).unwrap();
    std::fs::write(r.join("sys/devices/system/cpu/online"), "0-1\n").unwrap();
    let (code, out) = run(Command::new(tuning("irq-affinity.sh")).args(["--iface", "eth0", "--root"]).arg(r));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("echo 1 > {}/proc/irq/25/smp_affinity_list", r.display())), "{out}");
    assert!(!out.contains("irq/30"), "only the interface's interrupts: {out}");
    assert_eq!(std::fs::read_to_string(r.join("proc/irq/25/smp_affinity_list")).unwrap(), "0\n", "dry run");
    let (code, out) = run(Command::new(tuning("irq-affinity.sh")).args(["--iface", "eth0", "--apply", "--root"]).arg(r));
    assert_eq!(code, 0, "{out}");
    let got: Vec<String> = [24, 25, 26].iter().map(|i| std::fs::read_to_string(r.join(format!("proc/irq/{i}/smp_affinity_list"))).unwrap()).collect();
    assert_eq!(got, ["0\n", "1\n", "0\n"]);
}

fn doctor(config: &Path, proc_root: &Path) -> (i32, serde_json::Value) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_ringmail")).args(["doctor", "--json", "--config"]).arg(config).arg("--proc-root").arg(proc_root).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

fn status_of<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {v}"))["status"].as_str().unwrap()
}

#[test]
fn doctor_passes_a_good_configuration_on_a_tuned_host() {
    let host = fake_host(true);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringmail.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\nworkers = 1\n[imap]\nlisten = [\"127.0.0.1:0\"]\nimaps = [\"127.0.0.1:0\"]\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[limits]\nmax_connections = 100\n", dir.path().join("data").display().to_string()),
    )
    .unwrap();
    let (code, v) = doctor(&config, host.path());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    for name in [
        "workers / cores",
        "open files (RLIMIT_NOFILE)",
        "data directory",
        "port imap",
        "port lmtp",
        "clock",
        "quota",
        "net.core.somaxconn",
        "vm.max_map_count",
    ] {
        assert_eq!(status_of(&v, name), "ok", "{name}: {v:#}");
    }
    assert!(!dir.path().join("data").exists(), "doctor creates nothing");
}

#[test]
fn doctor_fails_a_bad_configuration_and_warns_on_an_untuned_host() {
    let host = fake_host(false);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let config = dir.path().join("ringmail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nworkers = 64\n[imap]\nlisten = [\"{}\"]\nimaps = []\n[lmtp]\nlisten = []\n[limits]\nmax_connections = 100000000\n[tls]\ncert = {:?}\nkey = {:?}\n",
            file.join("data").display().to_string(),
            taken.local_addr().unwrap(),
            dir.path().join("missing.pem").display().to_string(),
            dir.path().join("missing.key").display().to_string()
        ),
    )
    .unwrap();
    let (code, v) = doctor(&config, host.path());
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["ok"], false);
    assert_eq!(status_of(&v, "port imap"), "fail");
    assert_eq!(status_of(&v, "data directory"), "fail");
    assert_eq!(status_of(&v, "TLS certificate"), "fail");
    assert_eq!(status_of(&v, "workers / cores"), "warn");
    assert_eq!(status_of(&v, "open files (RLIMIT_NOFILE)"), "warn");
    assert_eq!(status_of(&v, "net.core.somaxconn"), "warn");
    // The readable table says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_ringmail")).args(["doctor", "--config"]).arg(&config).arg("--proc-root").arg(host.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("cannot run this configuration"), "{text}");
}

/// Quota rules a Dovecot passwd-file may carry that ringmail does not apply
/// (one mailbox's rules, percentages) are pointed out.
#[test]
fn doctor_warns_of_quota_rules_it_ignores() {
    let host = fake_host(true);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("users"), "joe:{PLAIN}x::::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=Trash:storage=+100M\nann:{PLAIN}y\n").unwrap();
    let config = dir.path().join("ringmail.toml");
    std::fs::write(&config, format!("data_dir = {:?}\nworkers = 1\n[quota]\nstorage = \"2GiB\"\n", data.display().to_string())).unwrap();
    let (_, v) = doctor(&config, host.path());
    let q = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "quota").unwrap();
    assert_eq!(q["status"], "warn", "{q}");
    assert_eq!(q["value"], "default storage 2147483648 B, messages unlimited; 1 user(s) with their own", "{q}");
    assert!(q["note"].as_str().unwrap().contains("joe: userdb_quota_rule2=Trash:storage=+100M"), "{q}");
}

#[test]
fn the_production_example_config_parses() {
    let c = ringmail::config::Config::load(&tuning("ringmail.toml")).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/ringmail"));
    assert!(c.imap.imaps.iter().any(|a| a.port() == 993));
    assert!(c.metrics.listen.is_some_and(|a| a.ip().is_loopback()));
}

#[test]
fn the_systemd_unit_declares_what_the_issue_requires() {
    let unit = std::fs::read_to_string(tuning("ringmail.service")).unwrap();
    for line in [
        "Type=notify",
        "User=ringmail",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ringmail",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=1048576",
        "LimitMEMLOCK=infinity",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}

#[test]
fn serve_notifies_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/users"), "joe:{PLAIN}x\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args([
            "serve",
            "--imap",
            "127.0.0.1:0",
            "--imaps",
            "127.0.0.1:0",
            "--lmtp",
            "127.0.0.1:0",
            "--pop3",
            "127.0.0.1:0",
            "--pop3s",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}
