//! The `ringmail` command: run the server, manage users.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ringmail::auth::passwd::{edit_file, normalize_user_name, valid_user_name, Entry};
use ringmail::auth::scheme::hash_password;
use ringmail::config::{Config, Driver, LogFormat};
use ringmail::datadir::DataDirLock;
use ringmail::delivery::lda;
use ringmail::migrate::maildir::Layout;
use ringmail::net::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ringmail", version, about = "A fast, durable IMAP4rev2/IMAP4rev1 mail server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file (every setting has a built-in default).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where mail and the user file live (default ./ringmail-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// IMAP listen address (repeatable; default 127.0.0.1:1143).
        #[arg(long = "imap")]
        imap: Vec<SocketAddr>,
        /// Implicit-TLS IMAP listen address (repeatable; default 127.0.0.1:1993).
        #[arg(long = "imaps")]
        imaps: Vec<SocketAddr>,
        /// LMTP listen address (repeatable; default 127.0.0.1:2424).
        #[arg(long = "lmtp")]
        lmtp: Vec<SocketAddr>,
        /// Inbound SMTP listen address (repeatable; off by default).
        #[arg(long = "smtp")]
        smtp: Vec<SocketAddr>,
        /// POP3 listen address (repeatable; default 127.0.0.1:1110).
        #[arg(long = "pop3")]
        pop3: Vec<SocketAddr>,
        /// POP3 over implicit TLS (repeatable; default 127.0.0.1:1995).
        #[arg(long = "pop3s")]
        pop3s: Vec<SocketAddr>,
        /// Answer Postfix's SASL checks (Dovecot's auth protocol) here: HOST:PORT or a socket path.
        #[arg(long = "auth-socket")]
        auth_socket: Vec<String>,
        /// Serve Prometheus metrics over HTTP here (GET /metrics; off by default).
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// The cluster map: this server is one backend of several (docs/scale-out.md).
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// This backend's name in the cluster map (default: found by its IMAP address).
        #[arg(long)]
        cluster_self: Option<String>,
        /// The cluster's shared secret (a file), for the control port that user moves use.
        #[arg(long)]
        cluster_secret: Option<PathBuf>,
        /// Answer nginx's mail auth_http requests here (needs --cluster).
        #[arg(long)]
        auth_http: Option<SocketAddr>,
        /// Answer Postfix's socketmap transport lookups here (needs --cluster).
        #[arg(long)]
        socketmap: Option<SocketAddr>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// I/O driver: auto, uring or epoll.
        #[arg(long)]
        driver: Option<Driver>,
        /// Log format: text or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Deliver one message from standard input (for an MTA's pipe transport).
    /// Exits 0 when stored, 67 for an unknown user, 65 for a message over the
    /// size limit, 75 to make the MTA retry.
    Deliver {
        #[command(flatten)]
        common: Common,
        /// The recipient.
        #[arg(long)]
        user: String,
        /// Mailbox to store into (INBOX if it does not exist).
        #[arg(long, short = 'm')]
        mailbox: Option<String>,
        /// Envelope sender, for the Return-Path header.
        #[arg(long, short = 'f', default_value = "")]
        from: String,
    },
    /// Check whether this host can run the configuration: io_uring, open
    /// files, data directory, ports, cores, clock, certificate, kernel
    /// settings. Exits 1 if it cannot.
    Doctor {
        #[command(flatten)]
        common: Common,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Read kernel settings from DIR/proc/sys (for tests).
        #[arg(long, hide = true, default_value = "/")]
        proc_root: PathBuf,
    },
    /// Move mail in, keeping UIDVALIDITY and UIDs so that clients do not
    /// download it again: from a Dovecot Maildir, an mbox file or any IMAP
    /// server. With a server running, the import goes through it and users
    /// keep reading mail meanwhile. Run it again to fetch only what is new.
    /// Exits 1 if anything was skipped or --verify found a difference.
    Import {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Write a user's mail to DIR as a Maildir Dovecot reads as its own
    /// (dovecot-uidlist with the same UIDVALIDITY and UIDs, flags, keywords,
    /// subscriptions).
    Export {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        user: String,
        /// Folders as .Folder.Sub (maildir++) or Folder/Sub (fs).
        #[arg(long, default_value = "maildir++")]
        layout: LayoutArg,
        dir: PathBuf,
    },
    /// Manage users (the passwd-file in the data directory).
    User {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: UserCmd,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    #[value(name = "maildir++")]
    MaildirPlusPlus,
    Fs,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::MaildirPlusPlus => Layout::MaildirPlusPlus,
            LayoutArg::Fs => Layout::Fs,
        }
    }
}

#[derive(Args, Clone)]
struct ImportArgs {
    /// The ringmail user to import into.
    #[arg(long)]
    user: String,
    /// Show what would be imported; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Afterwards compare every message (UID, flags, INTERNALDATE, content
    /// hash) with the source.
    #[arg(long)]
    verify: bool,
    /// Readers working at once (IMAP connections).
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// No progress output, only problems and the summary.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum ImportSource {
    /// A Maildir as Dovecot writes it (dovecot-uidlist, dovecot-keywords,
    /// subscriptions; .Folder or LAYOUT=fs folders).
    Maildir {
        path: PathBuf,
        /// Folder layout; found out from the directory if not given.
        #[arg(long)]
        layout: Option<LayoutArg>,
        #[command(flatten)]
        args: ImportArgs,
    },
    /// An mbox file (Dovecot's X-UID/X-IMAPbase headers keep UIDs).
    Mbox {
        file: PathBuf,
        /// The mailbox to import into.
        #[arg(long, short = 'm', default_value = "INBOX")]
        mailbox: String,
        /// mboxrd: take one '>' off every ">From " line (default: mboxo, as Dovecot).
        #[arg(long)]
        mboxrd: bool,
        #[command(flatten)]
        args: ImportArgs,
    },
    /// Any IMAP server, over several connections.
    Imap {
        /// HOST:PORT of the source server.
        #[arg(long)]
        host: String,
        /// TLS from the first byte (port 993).
        #[arg(long, conflicts_with = "starttls")]
        tls: bool,
        /// STARTTLS before logging in.
        #[arg(long)]
        starttls: bool,
        /// Accept any certificate (a source with a self-signed one).
        #[arg(long)]
        insecure: bool,
        /// The user to log in as on the source.
        #[arg(long)]
        source_user: String,
        /// Read this user's mail, logged in as --source-user (a master or
        /// admin user: the SASL PLAIN authorization identity, as Dovecot's
        /// master users take it). Import every user with one admin password.
        #[arg(long)]
        source_authzid: Option<String>,
        /// Read the source password from standard input (required: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        args: ImportArgs,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user. Without --password-stdin a random password is generated and printed.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user from the user file (their mail stays on disk).
    Del { name: String },
    /// List users.
    List,
    /// Show a user's quota: usage and limits (RFC 9208's STORAGE in KiB,
    /// MESSAGE in messages), read from the files even while a server runs.
    Quota { name: String },
    /// Move a user's mail to another backend of the cluster while they are
    /// served (docs/scale-out.md): copy, hold briefly, switch.
    Move {
        name: String,
        /// The backend (its name in the cluster map) to move them to.
        #[arg(long)]
        to: String,
        /// The cluster map (default: [cluster] file of the configuration).
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// The cluster's shared secret (default: [cluster] secret_file).
        #[arg(long)]
        cluster_secret: Option<PathBuf>,
        /// Seconds the old backend holds the user for the last changes at most.
        #[arg(long, default_value_t = 120)]
        lease: u64,
        /// Keep the old backend's copy of the mail (it is not served again).
        #[arg(long)]
        keep_source: bool,
        #[arg(long)]
        quiet: bool,
        /// Name every file copied in each round.
        #[arg(long)]
        verbose: bool,
        /// Crash tests: abort right after a step (copied, held, sealed, committed).
        #[arg(long, hide = true)]
        crash_at: Option<String>,
    },
}

fn load_config(common: &Common) -> Result<Config, String> {
    let mut c = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data_dir {
        c.data_dir = d.clone();
    }
    Ok(c)
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn read_password(from_stdin: bool) -> Result<(String, bool), String> {
    if !from_stdin {
        return Ok((random_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read password: {e}"))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok((pw, false))
}

fn set_password(config: &Config, name: &str, password: &str, must_exist: Option<bool>) -> Result<(), String> {
    let name = normalize_user_name(name);
    if !valid_user_name(&name) {
        return Err(format!("invalid user name {name:?}: use a-z, 0-9 and . _ @ + - (at most 64)"));
    }
    let hash = hash_password(password.as_bytes());
    edit_file(&config.users_file(), |entries| {
        let existing = entries.iter_mut().find(|e| e.name == name);
        match (existing, must_exist) {
            (Some(_), Some(false)) => Err(format!("user {name} already exists")),
            (None, Some(true)) => Err(format!("no user {name}")),
            (Some(e), _) => {
                e.hash = Arc::from(hash.as_str());
                Ok(())
            }
            (None, _) => {
                entries.push(Entry { name: name.clone(), hash: Arc::from(hash.as_str()), rest: String::new() });
                Ok(())
            }
        }
    })
}

fn user_cmd(common: &Common, action: UserCmd) -> Result<(), String> {
    let config = load_config(common)?;
    match action {
        UserCmd::Add { name, password_stdin } => {
            let (pw, generated) = read_password(password_stdin)?;
            set_password(&config, &name, &pw, Some(false))?;
            if generated {
                println!("user {} added with password {pw}", normalize_user_name(&name));
            } else {
                println!("user {} added", normalize_user_name(&name));
            }
        }
        UserCmd::Passwd { name, password_stdin } => {
            let (pw, generated) = read_password(password_stdin)?;
            set_password(&config, &name, &pw, Some(true))?;
            if generated {
                println!("new password for {}: {pw}", normalize_user_name(&name));
            }
        }
        UserCmd::Del { name } => {
            let name = normalize_user_name(&name);
            edit_file(&config.users_file(), |entries| {
                let before = entries.len();
                entries.retain(|e| e.name != name);
                if entries.len() == before {
                    Err(format!("no user {name}"))
                } else {
                    Ok(())
                }
            })?;
            println!("user {name} removed; their mail remains in {}", config.data_dir.join("mail").join(&name).display());
        }
        UserCmd::Quota { name } => print!("{}", quota_report(&config, &normalize_user_name(&name))?),
        UserCmd::Move { name, to, cluster, cluster_secret, lease, keep_source, quiet, verbose, crash_at } => {
            let map_path = cluster.or(config.cluster.file.clone()).ok_or("no cluster map: give --cluster or [cluster] file")?;
            let secret_path =
                cluster_secret.or(config.cluster.secret_file.clone()).ok_or("no cluster secret: give --cluster-secret or [cluster] secret_file")?;
            let map = ringmail::cluster::ClusterMap::load(&map_path)?;
            let secret = ringmail::cluster::control_auth::load_secret(&secret_path)?;
            let name = normalize_user_name(&name);
            let opts = ringmail::migrate::mover::Options { lease: std::time::Duration::from_secs(lease), keep_source, quiet, verbose, crash_at };
            let s = ringmail::migrate::mover::run(&map, &secret, &name, &to, &opts)?;
            println!(
                "{name} moved from {} to {}: {} files, {} bytes in {} rounds, held {} ms, took {} ms",
                s.from,
                s.to,
                s.files,
                s.bytes,
                s.rounds,
                s.held.as_millis(),
                s.took.as_millis()
            );
            return Ok(());
        }
        UserCmd::List => {
            let db = ringmail::auth::UserDb::open(&config.users_file()).map_err(|e| e.to_string())?;
            for n in db.names() {
                println!("{n}");
            }
        }
    }
    // Run by root on the package's data directory: the user file is the server's.
    ringmail::datadir::hand_back(&config.data_dir, &[], &[config.users_file(), config.data_dir.join(ringmail::datadir::LOCK_FILE)])
}

/// `ringmail user quota`: a table like `doveadm quota get`'s.
fn quota_report(config: &Config, name: &str) -> Result<String, String> {
    let db = ringmail::auth::UserDb::open(&config.users_file()).map_err(|e| e.to_string())?;
    if db.lookup(name).is_none() {
        return Err(format!("no user {name}"));
    }
    let limits = db.quota(name, config.quota.limits());
    let (store, _lock) = ringmail::migrate::target::read_view(config)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let usage = store.user_usage(name, now).map_err(|e| format!("cannot read the mail of {name}: {e}"))?;
    use ringmail::store::quota::kib;
    let row = |kind: &str, value: u64, limit: Option<u64>| {
        let (limit, pct) = match limit {
            Some(l) => (l.to_string(), (value * 100).checked_div(l).map_or("100".to_string(), |p| p.to_string())),
            None => ("-".to_string(), "0".to_string()),
        };
        format!("{:<12} {:<8} {:>12} {:>12} {:>4}\n", "User quota", kind, value, limit, pct)
    };
    let mut s = format!("{:<12} {:<8} {:>12} {:>12} {:>4}\n", "Quota name", "Type", "Value", "Limit", "%");
    s.push_str(&row("STORAGE", kib(usage.bytes), limits.storage.map(kib)));
    s.push_str(&row("MESSAGE", usage.messages, limits.messages));
    Ok(s)
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Holds `ringmail.lock` for as long as the server runs: one server per
/// data directory. A `ringmail deliver` storing directly holds it for a
/// moment, hence the wait.
fn lock_data_dir(config: &Config) -> Result<DataDirLock, String> {
    let lock = DataDirLock::acquire(&config.data_dir, std::time::Duration::from_secs(10))?
        .ok_or_else(|| format!("another ringmail server is running on {}", config.data_dir.display()))?;
    // Forget the previous run's LMTP address until the listeners are up.
    lock.publish(std::process::id(), None).map_err(|e| format!("cannot write the lock file: {e}"))?;
    Ok(lock)
}

/// Listen addresses (and the cluster) given on the command line.
struct Listen {
    metrics: Option<SocketAddr>,
    cluster: Option<PathBuf>,
    cluster_self: Option<String>,
    cluster_secret: Option<PathBuf>,
    auth_http: Option<SocketAddr>,
    socketmap: Option<SocketAddr>,
    imap: Vec<SocketAddr>,
    imaps: Vec<SocketAddr>,
    lmtp: Vec<SocketAddr>,
    smtp: Vec<SocketAddr>,
    pop3: Vec<SocketAddr>,
    pop3s: Vec<SocketAddr>,
    auth_socket: Vec<String>,
}

fn serve(common: Common, listen: Listen, workers: Option<usize>, driver: Option<Driver>, log_format: Option<String>) -> Result<(), String> {
    let mut config = load_config(&common)?;
    // What the command line gives replaces the configuration's.
    fn list<T>(to: &mut Vec<T>, given: Vec<T>) {
        if !given.is_empty() {
            *to = given;
        }
    }
    fn one<T>(to: &mut Option<T>, given: Option<T>) {
        if given.is_some() {
            *to = given;
        }
    }
    list(&mut config.imap.listen, listen.imap);
    list(&mut config.imap.imaps, listen.imaps);
    list(&mut config.lmtp.listen, listen.lmtp);
    list(&mut config.smtp.listen, listen.smtp);
    list(&mut config.pop3.listen, listen.pop3);
    list(&mut config.pop3.pop3s, listen.pop3s);
    list(&mut config.sasl.listen, listen.auth_socket);
    one(&mut config.metrics.listen, listen.metrics);
    one(&mut config.cluster.file, listen.cluster);
    one(&mut config.cluster.self_name, listen.cluster_self);
    one(&mut config.cluster.secret_file, listen.cluster_secret);
    one(&mut config.cluster.auth_http, listen.auth_http);
    one(&mut config.cluster.socketmap, listen.socketmap);
    if let Some(w) = workers {
        config.workers = w;
    }
    if let Some(d) = driver {
        config.driver = d;
    }
    if let Some(f) = log_format {
        config.log.format = match f.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => return Err(format!("unknown log format {f:?} (text or json)")),
        };
    }
    init_logging(config.log.format, config.log.level.as_deref());
    let lock = lock_data_dir(&config)?;
    let db = ringmail::auth::UserDb::open(&config.users_file()).map_err(|e| e.to_string())?;
    let demo_password = if db.is_empty() {
        let pw = random_password();
        set_password(&config, "demo", &pw, Some(false))?;
        Some(pw)
    } else {
        None
    };
    let server = Server::start(config)?;
    if let Err(e) = lock.publish(std::process::id(), server.lmtp_addrs.first().copied()) {
        tracing::warn!(error = %e, "cannot record the LMTP address for `ringmail deliver`");
    }
    let addr = server.imap_addrs.first().copied();
    eprintln!(
        "ringmail is running ({:?} driver). IMAP: {:?} IMAPS: {:?} LMTP: {:?} SMTP: {:?} POP3: {:?} POP3S: {:?}",
        server.driver, server.imap_addrs, server.imaps_addrs, server.lmtp_addrs, server.smtp_addrs, server.pop3_addrs, server.pop3s_addrs
    );
    if let (Some(pw), Some(addr)) = (demo_password, addr) {
        eprintln!("No users existed, so user \"demo\" was created with password {pw}");
        eprintln!("Try: python3 -c \"import imaplib; m=imaplib.IMAP4('{}', {}); print(m.login('demo', '{pw}'))\"", addr.ip(), addr.port());
    }
    let _ = std::io::stderr().flush();
    server.run_until_signal();
    Ok(())
}

/// `ringmail deliver`: sysexits(3) codes, as MTAs expect of a delivery agent.
fn deliver(common: &Common, user: &str, mailbox: Option<&str>, from: &str) -> ExitCode {
    let fail = |code: u8, msg: String| {
        eprintln!("ringmail deliver: {msg}");
        ExitCode::from(code)
    };
    let config = match load_config(common) {
        Ok(c) => c,
        Err(e) => return fail(75, e),
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut raw) {
        return fail(75, format!("cannot read the message: {e}"));
    }
    let message = lda::normalize_input(raw);
    if message.len() as u64 > config.limits.max_message_size {
        // EX_DATAERR is not retried; the message will never fit.
        return fail(65, format!("message of {} bytes exceeds max_message_size", message.len()));
    }
    match lda::deliver(&config, user, mailbox, from, &message) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ lda::LdaError::NoUser) => fail(e.exit_code(), format!("no such user: {user}")),
        Err(e @ lda::LdaError::OverQuota) => fail(e.exit_code(), format!("mailbox of {user} is full (quota exceeded)")),
        Err(lda::LdaError::TempFail(why)) => fail(75, why),
    }
}

fn import(common: &Common, source: ImportSource) -> ExitCode {
    use ringmail::migrate::{engine::Options, imap, maildir, mbox, model::Source};
    let (args, built): (ImportArgs, Result<Box<dyn Source>, String>) = match source {
        ImportSource::Maildir { path, layout, args } => {
            (args, maildir::MaildirSource::open(&path, layout.map(Layout::from)).map(|s| Box::new(s) as Box<dyn Source>))
        }
        ImportSource::Mbox { file, mailbox, mboxrd, args } => (args, mbox::MboxSource::open(&file, &mailbox, mboxrd).map(|s| Box::new(s) as Box<dyn Source>)),
        ImportSource::Imap { host, tls, starttls, insecure, source_user, source_authzid, password_stdin, args } => {
            let built = read_password(password_stdin).and_then(|(password, _)| {
                let (h, port) = match host.rsplit_once(':') {
                    Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().map_err(|_| format!("bad port in {host:?}"))?),
                    None => (host.clone(), if tls { 993 } else { 143 }),
                };
                let security = if tls {
                    imap::Security::Tls
                } else if starttls {
                    imap::Security::StartTls
                } else {
                    imap::Security::None
                };
                Ok(Box::new(imap::ImapSource { host: h, port, security, insecure, user: source_user, password, authzid: source_authzid }) as Box<dyn Source>)
            });
            (args, built)
        }
    };
    let fail = |e: String| {
        eprintln!("ringmail import: {e}");
        ExitCode::FAILURE
    };
    let source = match built {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let config = match load_config(common) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let opts = Options { dry_run: args.dry_run, verify: args.verify, jobs: args.jobs.clamp(1, 64), ..Default::default() };
    match ringmail::migrate::command::import(&config, &*source, &args.user, &opts, args.quiet) {
        Ok(s) if s.ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

fn doctor(common: &Common, json: bool, proc_root: &std::path::Path) -> ExitCode {
    let config = match load_config(common) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks = ringmail::doctor::run(&config, proc_root);
    if json {
        println!("{}", ringmail::doctor::json(&checks));
    } else {
        print!("{}", ringmail::doctor::table(&checks));
    }
    ExitCode::from(ringmail::doctor::exit_code(&checks) as u8)
}

fn main() -> ExitCode {
    ringmail::datadir::private_umask();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Serve {
            common,
            imap,
            imaps,
            lmtp,
            smtp,
            pop3,
            pop3s,
            auth_socket,
            metrics,
            cluster,
            cluster_self,
            cluster_secret,
            auth_http,
            socketmap,
            workers,
            driver,
            log_format,
        } => serve(
            common,
            Listen { metrics, cluster, cluster_self, cluster_secret, auth_http, socketmap, imap, imaps, lmtp, smtp, pop3, pop3s, auth_socket },
            workers,
            driver,
            log_format,
        ),
        Cmd::Deliver { common, user, mailbox, from } => return deliver(&common, &user, mailbox.as_deref(), &from),
        Cmd::User { common, action } => user_cmd(&common, action),
        Cmd::Import { common, source } => return import(&common, source),
        Cmd::Export { common, user, layout, dir } => {
            load_config(&common).and_then(|c| ringmail::migrate::command::export(&c, &user, &dir, layout.into()).map(|_| ()))
        }
        Cmd::Doctor { common, json, proc_root } => return doctor(&common, json, &proc_root),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: {e}");
            ExitCode::FAILURE
        }
    }
}
