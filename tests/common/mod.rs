//! Helpers for tests that run a real server on loopback.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ringmail::config::{Config, Driver};
use ringmail::net::Server;

pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub lmtp: Option<SocketAddr>,
    pub smtp: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start(driver: Driver, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users"), "joe:{PLAIN}secret\nann:{PLAIN}pw\nbob:{PLAIN}pw\n").unwrap();
        Self::start_in(dir, driver, tweak)
    }

    /// Shuts the server down (as SIGTERM does) and starts a new one on the
    /// same data directory, with the default settings of `start`.
    pub fn restart(mut self, driver: Driver) -> TestServer {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_in(dir, driver, |_| {})
    }

    fn start_in(dir: tempfile::TempDir, driver: Driver, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut c = Config { data_dir: dir.path().to_path_buf(), workers: 2, driver, ..Config::default() };
        c.imap.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.imap.imaps = vec![];
        c.lmtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.pop3.listen = vec![];
        c.pop3.pop3s = vec![];
        c.limits.auth_failure_delay = Duration::from_millis(10);
        c.limits.auth_failure_delay_max = Duration::from_millis(50);
        tweak(&mut c);
        let server = Server::start(c).expect("server starts");
        let addr = server.imap_addrs[0];
        let lmtp = server.lmtp_addrs.first().copied();
        let smtp = server.smtp_addrs.first().copied();
        let imaps = server.imaps_addrs.first().copied();
        TestServer { server: Some(server), addr, lmtp, smtp, imaps, dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// Runs a Python script and returns its stdout; `args[0]` is split into
/// `host` and `port` for the script, and every arg is in `sys.argv[1..]`.
pub fn python(script: &str, args: &[String]) -> String {
    let prelude = "import sys, socket\nhost, port = sys.argv[1].rsplit(':', 1)\nport = int(port)\n";
    let out = run_with_input(Command::new("python3").arg("-").args(args), format!("{prelude}{script}").as_bytes());
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` with `input` on its standard input; what it wrote and how
/// it ended.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `ringmail serve` as a process of its own, for tests that kill it or
/// run the command line beside it: on `dir`, two workers, IMAP, IMAPS and
/// LMTP on ephemeral loopback ports.
pub struct ServeProcess {
    pub child: Child,
    pub imap: SocketAddr,
    pub lmtp: SocketAddr,
}

/// Starts `ringmail serve` and waits (20 s at most) for the line it logs
/// when it is up, which names its addresses; its standard error is drained
/// after, so it never blocks on a full pipe.
pub fn serve_process(dir: &Path) -> ServeProcess {
    serve_process_with(dir, &["--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0", "--lmtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0"])
}

/// `ringmail serve` on `dir` with two workers and `args` (which must give
/// IMAP and LMTP addresses), started as [`serve_process`] is.
pub fn serve_process_with(dir: &Path, args: &[&str]) -> ServeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .arg("serve")
        .args(args)
        .args(["--workers", "2", "--data-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ringmail");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // The first address in `[...]` after `key` in the start-up line.
    let addr_after = |line: &str, key: &str| -> SocketAddr { line.split(key).nth(1).expect("address list").split([']', ',']).next().unwrap().parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (imap, lmtp) = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline, "server did not start");
        if line.contains("IMAP: [") {
            break (addr_after(&line, "IMAP: ["), addr_after(&line, "LMTP: ["));
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    ServeProcess { child, imap, lmtp }
}

/// A line-oriented IMAP client with timeouts, for tests.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let w = s.try_clone().unwrap();
        Client { r: BufReader::new(s), w }
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    pub fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
        self.w.write_all(b"\r\n").unwrap();
    }

    pub fn send_raw(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    /// Reads lines (and literals) until the tagged response for `tag`.
    pub fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed while waiting for {tag}; got {lines:?}");
            let mut full = l.clone();
            if let Some(n) = literal_len(&l) {
                let mut buf = vec![0; n];
                self.r.read_exact(&mut buf).unwrap();
                full.push_str(&String::from_utf8_lossy(&buf));
                full.push_str(&self.line());
            }
            let done = full.starts_with(&format!("{tag} "));
            lines.push(full);
            if done {
                return lines;
            }
        }
    }

    pub fn cmd(&mut self, tag: &str, c: &str) -> Vec<String> {
        self.send(&format!("{tag} {c}"));
        self.until(tag)
    }

    pub fn login(&mut self, user: &str, pw: &str) {
        let greeting = self.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let r = self.cmd("L", &format!("LOGIN {user} {pw}"));
        assert!(r.last().unwrap().starts_with("L OK"), "{r:?}");
    }

    /// The lines (with their literals) the server sends unasked, until it
    /// has been quiet for `quiet`.
    pub fn unsolicited(&mut self, quiet: Duration) -> Vec<String> {
        self.r.get_ref().set_read_timeout(Some(quiet)).unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            match self.r.read_line(&mut l) {
                Ok(n) if n > 0 => {
                    if let Some(n) = literal_len(&l) {
                        let mut buf = vec![0; n];
                        self.r.read_exact(&mut buf).unwrap();
                        l.push_str(&String::from_utf8_lossy(&buf));
                        l.push_str(&self.line());
                    }
                    lines.push(l);
                }
                _ => break,
            }
        }
        self.r.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        lines
    }

    /// True when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let t = line.trim_end();
    let t = t.strip_suffix('}')?;
    let open = t.rfind('{')?;
    t[open + 1..].trim_end_matches('+').parse().ok()
}

/// Runs a test body once per I/O driver (io_uring and epoll).
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident => $body:expr;)*) => {
        mod uring {
            use super::*;
            $(#[test] fn $name() { ($body)(ringmail::config::Driver::Uring) })*
        }
        mod epoll {
            use super::*;
            $(#[test] fn $name() { ($body)(ringmail::config::Driver::Epoll) })*
        }
    };
}

pub fn driver_name(d: Driver) -> &'static str {
    match d {
        Driver::Uring => "uring",
        Driver::Epoll => "epoll",
        Driver::Auto => "auto",
    }
}
