//! `ringmail-load SCENARIO --target HOST:PORT ...`: see loadtest/README.md.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringmail_load::run::{run, Driver, Plan};
use ringmail_load::scenario::{Options, Scenario, Weights};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ringmail-load", version, about = "Load generator for IMAP servers (ringmail, Dovecot, any IMAP4rev1/rev2 server), POP3 and LMTP")]
struct Cli {
    /// login | session | mix | idle | append | lmtp | populate | slow-reader | pop3
    /// (and `commands`: single commands timed on one connection; see --help there)
    scenario: Scenario,
    /// Server address (the LMTP address for `lmtp`, the POP3 one for `pop3`).
    #[arg(long)]
    target: String,
    /// User name pattern; %d is replaced by the user number.
    #[arg(long, default_value = "user%d")]
    user: String,
    /// Number of users (user0 .. user{N-1}, from --first-user).
    #[arg(long, default_value_t = 100)]
    users: u32,
    #[arg(long, default_value_t = 0)]
    first_user: u32,
    #[arg(long, default_value = "pass")]
    password: String,
    /// Closed loop: concurrent connections. With --rate: most in flight.
    #[arg(long)]
    connections: Option<usize>,
    /// Open loop: sessions (login, session, pop3) or commands (mix, append, lmtp) per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured time (idle: how long connections are held after all are in IDLE).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Time run but not counted, before the measurement.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Load threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Source addresses, e.g. 127.0.0.1-127.0.0.8 (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    source: Vec<String>,
    /// Mailbox the scenarios work in.
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// mix weights, e.g. fetch=30,store=15,append=8 (others keep their defaults).
    #[arg(long, default_value = "")]
    weights: String,
    /// Corpus seed (same seed, same messages).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// populate: messages per user.
    #[arg(long, default_value_t = 100)]
    messages: u32,
    /// append, lmtp, mix: draw messages from the first N of the corpus.
    #[arg(long, default_value_t = 200)]
    corpus: u32,
    /// lmtp: recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: u32,
    /// slow-reader: bytes per second the slow connection reads.
    #[arg(long, default_value_t = 1 << 20)]
    read_rate: u64,
    /// Per-reply timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// IMAP over implicit TLS (e.g. port 993); the handshake is timed as "TLS handshake".
    #[arg(long, conflicts_with = "starttls")]
    tls: bool,
    /// STARTTLS after the greeting, then CAPABILITY; timed as "STARTTLS".
    #[arg(long)]
    starttls: bool,
    /// IMAP scenarios: COMPRESS=DEFLATE (RFC 4978) after LOGIN; bytes_in
    /// then counts compressed bytes.
    #[arg(long)]
    compress: bool,
    /// idle: NOTIFY (RFC 5465) for the selected and every other mailbox
    /// instead of IDLE.
    #[arg(long)]
    notify: bool,
    /// With --tls/--starttls: resume TLS sessions (as returning clients do)
    /// instead of a full handshake per connection.
    #[arg(long)]
    tls_resume: bool,
    /// idle: server process(es) whose memory to measure.
    #[arg(long)]
    pid: Vec<u32>,
    /// idle: include the descendants of --pid (for a process per connection, as Dovecot runs).
    #[arg(long)]
    pid_tree: bool,
    /// auto | uring | epoll
    #[arg(long, default_value = "auto")]
    driver: String,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write percentile distributions (.hgrm) per operation here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile plot.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No live line.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `127.0.0.1-127.0.0.8` or one address.
fn parse_sources(specs: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for spec in specs {
        match spec.split_once('-') {
            Some((a, b)) => {
                let (a, b): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
                    (a.parse().map_err(|_| format!("bad address {a:?}"))?, b.parse().map_err(|_| format!("bad address {b:?}"))?);
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 65_536 {
                    return Err(format!("bad source range {spec:?}"));
                }
                out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
            }
            None => out.push(spec.parse().map_err(|_| format!("bad source address {spec:?}"))?),
        }
    }
    Ok(out)
}

fn default_connections(s: Scenario, rate: Option<f64>) -> usize {
    match (s, rate) {
        (_, Some(_)) => 256,
        (Scenario::Login | Scenario::Session | Scenario::Pop3, None) => 32,
        (Scenario::Mix, None) => 100,
        (Scenario::Idle, None) => 1000,
        _ => 8,
    }
}

/// `ringmail-load commands`: single commands timed on one connection.
#[derive(Parser)]
#[command(name = "ringmail-load commands")]
struct CommandsCli {
    #[arg(long)]
    target: String,
    #[arg(long, default_value = "user0")]
    user: String,
    #[arg(long, default_value = "pass")]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// A command to time (repeatable); default: the SORT and THREAD forms
    /// webmail sends.
    #[arg(long = "command")]
    commands: Vec<String>,
    /// Runs per command: the first is reported apart, then the median.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also time each command right after appending a corpus message to the
    /// mailbox (`--repeat` - 1 times; the mailbox keeps the messages).
    #[arg(long)]
    arrivals: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
}

fn commands_main(args: impl Iterator<Item = String>) -> Result<ExitCode, String> {
    let cli = CommandsCli::parse_from(args);
    let target: SocketAddr =
        cli.target.to_socket_addrs().map_err(|e| format!("cannot resolve {}: {e}", cli.target))?.next().ok_or("no address for --target")?;
    let commands: Vec<String> = if cli.commands.is_empty() { ringmail_load::commands::WEBMAIL.iter().map(|c| c.to_string()).collect() } else { cli.commands };
    let plan = ringmail_load::commands::Plan { mailbox: &cli.mailbox, commands: &commands, repeat: cli.repeat, arrivals: cli.arrivals.then_some(cli.seed) };
    let timings = ringmail_load::commands::time(target, &cli.user, &cli.password, &plan, cli.timeout)?;
    print!("{}", ringmail_load::commands::table(&timings));
    Ok(ExitCode::SUCCESS)
}

/// `ringmail-load scale`: command times against the size of one mailbox.
#[derive(Parser)]
#[command(name = "ringmail-load scale")]
struct ScaleCli {
    /// A server to measure: NAME=HOST:PORT (repeatable; ratios are to the first).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// The server's process, for its anonymous memory after each size
    /// (children included): NAME=PID, or NAME=FILE for a pid file read each
    /// time (the process changes with --restart).
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// A shell command that restarts the server and returns once it is
    /// started; after each size the first SELECT after it is timed (the
    /// time to open the mailbox from disk): NAME=COMMAND.
    #[arg(long = "restart")]
    restarts: Vec<String>,
    /// The largest size a server is measured at (the others go on): NAME=N.
    #[arg(long = "up-to")]
    up_to: Vec<String>,
    /// The user's Maildir on a server that keeps one (Dovecot): messages are
    /// written there rather than appended: NAME=DIR.
    #[arg(long = "maildir")]
    maildirs: Vec<String>,
    #[arg(long, default_value = "user0")]
    user: String,
    #[arg(long, default_value = "pass")]
    password: String,
    /// Mailbox sizes, in messages.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<u64>,
    /// Measured runs per command (after one unmeasured); COPY, MOVE and EXPUNGE run once.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where to write the log-log plot.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
}

/// NAME=VALUE.
fn named(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(n, v)| (n.to_string(), v.to_string())).ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

fn scale_main(args: impl Iterator<Item = String>) -> Result<ExitCode, String> {
    let cli = ScaleCli::parse_from(args);
    let mut servers = Vec::new();
    for s in &cli.servers {
        let (name, addr) = named(s)?;
        let target = addr.to_socket_addrs().map_err(|e| format!("cannot resolve {addr}: {e}"))?.next().ok_or("no address")?;
        let lookup = |list: &[String]| -> Result<Option<String>, String> {
            for x in list {
                let (n, v) = named(x)?;
                if n == name {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let pid = lookup(&cli.pids)?.map(|p| match p.parse::<u32>() {
            Ok(pid) => ringmail_load::scale::Pid::Fixed(pid),
            Err(_) => ringmail_load::scale::Pid::File(p.into()),
        });
        let maildir = lookup(&cli.maildirs)?.map(std::path::PathBuf::from);
        let restart = lookup(&cli.restarts)?;
        let up_to = lookup(&cli.up_to)?.map(|n| n.parse::<u64>().map_err(|e| format!("--up-to {n}: {e}"))).transpose()?.unwrap_or(u64::MAX);
        servers.push(ringmail_load::scale::Server { name, target, pid, maildir, restart, up_to });
    }
    let (points, memory) = ringmail_load::scale::run(&servers, &cli.user, &cli.password, &cli.sizes, cli.repeat, cli.timeout)?;
    let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
    print!("{}", ringmail_load::scale::table(&points, &memory, &names, &cli.sizes));
    if let Some(path) = &cli.svg {
        std::fs::write(path, ringmail_load::scale::svg(&points, &names, &cli.sizes)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    type Sub = fn(std::iter::Skip<std::env::Args>) -> Result<ExitCode, String>;
    let sub: Option<Sub> = match std::env::args().nth(1).as_deref() {
        Some("commands") => Some(commands_main),
        Some("scale") => Some(scale_main),
        _ => None,
    };
    if let Some(sub) = sub {
        return sub(std::env::args().skip(1)).unwrap_or_else(|e| {
            eprintln!("ringmail-load: {e}");
            ExitCode::from(2)
        });
    }
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringmail-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, String> {
    let target: SocketAddr =
        cli.target.to_socket_addrs().map_err(|e| format!("cannot resolve {}: {e}", cli.target))?.next().ok_or("no address for --target")?;
    let weights: Weights = cli.weights.parse()?;
    let driver = match cli.driver.as_str() {
        "auto" => Driver::Auto,
        "uring" | "io_uring" => Driver::Uring,
        "epoll" => Driver::Epoll,
        d => return Err(format!("unknown driver {d:?}")),
    };
    if cli.rate.is_some_and(|r| r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    let tls_mode = match (cli.tls, cli.starttls) {
        (true, _) => ringmail_load::tls::Mode::Implicit,
        (_, true) => ringmail_load::tls::Mode::StartTls,
        _ => ringmail_load::tls::Mode::Plain,
    };
    if tls_mode != ringmail_load::tls::Mode::Plain && cli.scenario == Scenario::Lmtp {
        return Err("--tls and --starttls are for the IMAP scenarios".into());
    }
    let opts = Options {
        scenario: cli.scenario,
        target,
        user_pattern: cli.user,
        users: cli.users.max(1),
        first_user: cli.first_user,
        password: cli.password,
        mailbox: cli.mailbox,
        weights,
        seed: cli.seed,
        messages: cli.messages,
        corpus_size: cli.corpus.max(1),
        timeout: cli.timeout,
        sources: parse_sources(&cli.source)?,
        recipients: cli.recipients.max(1),
        read_rate: cli.read_rate.max(1),
        tls: tls_mode,
        tls_config: (tls_mode != ringmail_load::tls::Mode::Plain)
            .then(|| ringmail_load::tls::client_config(cli.tls_resume, if cli.scenario == Scenario::Pop3 { b"pop3" } else { b"imap" })),
        compress: cli.compress,
        notify: cli.notify,
    };
    let plan = Plan {
        connections: cli.connections.unwrap_or_else(|| default_connections(cli.scenario, cli.rate)).max(1),
        rate: cli.rate,
        duration: cli.duration,
        warmup: cli.warmup,
        threads: cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        driver,
        pids: cli.pid,
        pid_tree: cli.pid_tree,
        live: !cli.quiet,
        opts,
    };
    let report = run(plan)?;
    print!("{}", report.table());
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(&report.json()).expect("JSON")).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(d) = &cli.hgrm {
        report.write_hgrm(d).map_err(|e| format!("cannot write {}: {e}", d.display()))?;
    }
    if let Some(p) = &cli.svg {
        report.write_svg(p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    // Errors make the exit status non-zero, so scripts notice.
    Ok(if report.rec.error_count() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_durations_parse() {
        assert_eq!(parse_sources(&["127.0.0.1-127.0.0.3".into(), "::1".into()]).unwrap().len(), 4);
        assert!(parse_sources(&["127.0.0.5-127.0.0.1".into()]).is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
