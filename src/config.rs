//! The server's configuration: a TOML file whose every field has an embedded
//! default, so `ringmail serve` runs with no file at all. Command-line flags
//! override the file (see `main.rs`).
//!
//! Durations are written as `"60s"`, `"30m"`, `"2h"` or `"250ms"`; sizes as
//! `"64MiB"`, `"512KiB"` or a plain number of bytes.

use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    Uring,
    Epoll,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Driver::Auto),
            "uring" | "io_uring" => Ok(Driver::Uring),
            "epoll" | "legacy" => Ok(Driver::Epoll),
            _ => Err(format!("unknown driver {s:?} (auto, uring or epoll)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Acknowledge only what is on disk (fdatasync, shared by group commit).
    #[default]
    Always,
    /// Do not sync before acknowledging. For benchmarks only: a crash or
    /// power loss loses mail that clients were told was stored.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A listener whose connections start authenticated as `user` (`* PREAUTH`).
/// Meant for a trusted local front end (a webmail on the same host).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreauthListener {
    pub listen: SocketAddr,
    pub user: String,
}

/// An IP network, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix.min(32))) };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix.min(128))) };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid address in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse().map_err(|_| format!("invalid prefix in {s:?}"))? };
        if prefix > max {
            return Err(format!("prefix too long in {s:?}"));
        }
        Ok(IpNet { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `"250ms"`, `"60s"`, `"30m"`, `"2h"`, `"1d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h, d)")),
    })
}

/// Parses `"64MiB"`, `"512KiB"`, `"1GiB"` or a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("invalid size unit in {s:?} (KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("size too large: {s:?}"))
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_size(d).map(Some)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        N(u64),
        T(String),
    }
    match S::deserialize(d)? {
        S::N(n) => Ok(n),
        S::T(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Cleartext IMAP listeners (STARTTLS offered when TLS is configured).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (IMAPS).
    pub imaps: Vec<SocketAddr>,
    pub preauth: Vec<PreauthListener>,
    /// Networks from which LOGIN is allowed without TLS. Loopback always is,
    /// unless `loopback_is_trusted = false`.
    pub cleartext_networks: Vec<IpNet>,
    pub loopback_is_trusted: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: vec!["127.0.0.1:1143".parse().expect("valid")],
            imaps: vec!["127.0.0.1:1993".parse().expect("valid")],
            preauth: Vec::new(),
            cleartext_networks: Vec::new(),
            loopback_is_trusted: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
    /// Autologout before authentication.
    #[serde(deserialize_with = "de_duration")]
    pub login_timeout: Duration,
    /// Autologout of an authenticated session that sends nothing (RFC 9051
    /// 5.4: at least 30 minutes).
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// How often a session in IDLE hears `* OK Still here`, which keeps NAT
    /// mappings alive; IDLE itself is never timed out (RFC 2177).
    #[serde(deserialize_with = "de_duration")]
    pub idle_keepalive: Duration,
    /// Failed logins on one connection before it is closed.
    pub max_auth_failures: u32,
    /// First delay after a failed login from an IP; doubles per failure.
    #[serde(deserialize_with = "de_duration")]
    pub auth_failure_delay: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub auth_failure_delay_max: Duration,
    /// How long verified credentials are remembered (saves rehashing).
    #[serde(deserialize_with = "de_duration")]
    pub auth_cache_ttl: Duration,
    #[serde(deserialize_with = "de_size")]
    pub max_message_size: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 19_000,
            max_connections_per_ip: 1_000,
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            idle_keepalive: Duration::from_secs(2 * 60),
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_millis(500),
            auth_failure_delay_max: Duration::from_secs(15),
            auth_cache_ttl: Duration::from_secs(3600),
            max_message_size: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub sync: SyncMode,
    /// Size a segment file grows to before a new one starts.
    #[serde(deserialize_with = "de_size")]
    pub segment_size: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { sync: SyncMode::Always, segment_size: 64 << 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpConfig {
    /// LMTP listeners (RFC 2033), for the MTA in front. Keep them on loopback
    /// or a trusted network: LMTP has no authentication.
    pub listen: Vec<SocketAddr>,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig { listen: vec!["127.0.0.1:2424".parse().expect("valid")] }
    }
}

/// Dovecot's authentication protocol for Postfix's submission service
/// (`smtpd_sasl_type = dovecot`): users send mail through Postfix with the
/// password they read mail with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaslConfig {
    /// Where to answer: `HOST:PORT` (Postfix: `smtpd_sasl_path =
    /// inet:HOST:PORT`) or a UNIX socket path (in Postfix's chroot, e.g.
    /// `/var/spool/postfix/private/auth`: `smtpd_sasl_path = private/auth`).
    /// Off when empty. Keep TCP on loopback or the mail hosts' network.
    pub listen: Vec<String>,
}

/// POP3 (RFC 1939) on the same mailboxes: the INBOX of each user.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// Cleartext POP3 listeners (STLS offered when TLS is configured).
    /// Passwords are taken without TLS only where IMAP takes them
    /// (`[imap] cleartext_networks`, loopback).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (POP3S, RFC 8314).
    pub pop3s: Vec<SocketAddr>,
    /// Autologout of a logged-in session that sends nothing (RFC 1939 3:
    /// at least 10 minutes).
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec!["127.0.0.1:1110".parse().expect("valid")],
            pop3s: vec!["127.0.0.1:1995".parse().expect("valid")],
            idle_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Inbound SMTP listeners (RFC 5321), off by default. Mail is accepted
    /// only for local recipients; nothing is ever relayed.
    pub listen: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Name in greetings and trace headers (default: the system host name).
    pub hostname: Option<String>,
    /// Domains whose mail is ours. Empty: LMTP accepts any domain (the MTA
    /// decided), SMTP only the host name and `localhost`.
    pub local_domains: Vec<String>,
    /// Recipients per message (RFC 5321 4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// A client that sends nothing for this long is disconnected (RFC 5321
    /// 4.5.3.2.7 suggests 5 minutes).
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Bad commands before the connection is closed.
    pub max_errors: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { hostname: None, local_domains: Vec::new(), max_recipients: 100, timeout: Duration::from_secs(300), max_errors: 10 }
    }
}

/// A user's quota (RFC 9208): what their mailboxes together may hold.
/// `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Bytes of mail (the sum of the messages' RFC822.SIZE).
    pub storage: Option<u64>,
    pub messages: Option<u64>,
}

impl QuotaLimits {
    pub fn is_unlimited(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }

    /// `self`, with what it leaves unset taken from `default`.
    pub fn or(self, default: QuotaLimits) -> QuotaLimits {
        QuotaLimits { storage: self.storage.or(default.storage), messages: self.messages.or(default.messages) }
    }
}

/// `[quota]`: the limits of users whose passwd-file line sets none (see
/// `auth::quota_rule` for the per-user form), and how delivery refuses
/// mail for a full mailbox.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// e.g. `"1GiB"`.
    #[serde(deserialize_with = "de_opt_size")]
    pub storage: Option<u64>,
    pub messages: Option<u64>,
    /// Over-quota deliveries get `452 4.2.2` (the sender retries) instead
    /// of `552 5.2.2` (bounced at once).
    pub temporary: bool,
}

impl QuotaConfig {
    pub fn limits(&self) -> QuotaLimits {
        QuotaLimits { storage: self.storage, messages: self.messages }
    }
}

/// `[metadata]`: what each user may keep in METADATA annotations (RFC
/// 5464), and the server's `/shared/admin` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// Largest value, e.g. `"64KiB"` (the default).
    #[serde(deserialize_with = "de_opt_size")]
    pub max_value_size: Option<u64>,
    /// Entries per user, over the server and all their mailboxes (500).
    pub max_entries: Option<usize>,
    /// Bytes of names and values per user (`"1MiB"`).
    #[serde(deserialize_with = "de_opt_size")]
    pub max_total_size: Option<u64>,
    /// How to reach the administrator, e.g. `"mailto:postmaster@example.org"`:
    /// the server entry `/shared/admin` (RFC 5464 3.2.1.1). Absent: none.
    pub admin: Option<String>,
}

/// What one user may keep in METADATA annotations (RFC 5464 4.1 asks for
/// at least 1024-byte values and 10 entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Bytes in one value.
    pub max_value: u64,
    /// Entries over the server and all mailboxes.
    pub max_entries: usize,
    /// Bytes of entry names and values together.
    pub max_total: u64,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        MetadataLimits { max_value: 64 << 10, max_entries: 500, max_total: 1 << 20 }
    }
}

impl MetadataConfig {
    pub fn limits(&self) -> MetadataLimits {
        let d = MetadataLimits::default();
        MetadataLimits {
            max_value: self.max_value_size.unwrap_or(d.max_value),
            max_entries: self.max_entries.unwrap_or(d.max_entries),
            max_total: self.max_total_size.unwrap_or(d.max_total),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) and private key. Without them a
    /// self-signed certificate is generated into `<data_dir>/tls/`. Both are
    /// re-read on SIGHUP.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A client that has not finished the TLS handshake by then is
    /// disconnected (its connection counts toward the per-IP limit meanwhile).
    #[serde(deserialize_with = "de_duration")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert: None, key: None, handshake_timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); off
    /// when absent. Keep it on loopback or a management network: it has no
    /// authentication.
    pub listen: Option<SocketAddr>,
}

/// Scale-out (docs/scale-out.md): this host as one backend of several.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster map (`[[backend]]` tables; see `cluster::map`). Off
    /// without it: every user lives here. Re-read on SIGHUP.
    pub file: Option<PathBuf>,
    /// This backend's name in the map. Default: the backend whose `imap`
    /// address is one this server listens on.
    #[serde(rename = "self")]
    pub self_name: Option<String>,
    /// nginx's `auth_http` endpoint (HTTP): checks passwords and names the
    /// user's backend. Off when absent.
    pub auth_http: Option<SocketAddr>,
    /// Postfix's socketmap (`transport_maps = socketmap:inet:ADDR:transport`):
    /// the LMTP transport of a recipient's backend. Off when absent.
    pub socketmap: Option<SocketAddr>,
    /// The secret every backend shares (a file of at least 16 bytes), which
    /// the control ports (`control =` in the map) ask for: `ringmail user
    /// move` copies users' files through them.
    pub secret_file: Option<PathBuf>,
}

/// The PROXY protocol (HAProxy's v1 and v2) in front of IMAP, IMAPS and LMTP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Addresses of proxies (nginx with `proxy_protocol on;`) whose
    /// connections start with a PROXY header naming the client. Their
    /// connections must send one; nobody else's may.
    pub trusted: Vec<IpNet>,
}

impl ProxyConfig {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.trusted.iter().any(|n| n.contains(ip))
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) as IPv4.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `ringmail=debug`.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    pub driver: Driver,
    pub imap: ImapConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub lmtp: LmtpConfig,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Config,
    pub sasl: SaslConfig,
    pub delivery: DeliveryConfig,
    pub quota: QuotaConfig,
    pub metadata: MetadataConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub cluster: ClusterConfig,
    pub proxy: ProxyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./ringmail-data"),
            workers: 0,
            driver: Driver::Auto,
            imap: ImapConfig::default(),
            limits: LimitsConfig::default(),
            store: StoreConfig::default(),
            lmtp: LmtpConfig::default(),
            smtp: SmtpConfig::default(),
            pop3: Pop3Config::default(),
            sasl: SaslConfig::default(),
            delivery: DeliveryConfig::default(),
            quota: QuotaConfig::default(),
            metadata: MetadataConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            proxy: ProxyConfig::default(),
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Number of workers to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    pub fn users_file(&self) -> PathBuf {
        self.data_dir.join("users")
    }

    /// Whether a client at `ip` may send a password without TLS.
    pub fn cleartext_allowed(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        (self.imap.loopback_is_trusted && ip.is_loopback()) || self.imap.cleartext_networks.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.imap.listen, vec!["127.0.0.1:1143".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn fields_parse() {
        let c = Config::from_toml(
            r#"
            data_dir = "/var/lib/ringmail"
            workers = 4
            driver = "epoll"
            [imap]
            listen = ["0.0.0.0:143"]
            cleartext_networks = ["10.0.0.0/8"]
            [limits]
            login_timeout = "45s"
            max_message_size = "25MiB"
            [quota]
            storage = "1GiB"
            messages = 100000
            [metadata]
            max_value_size = "4KiB"
            admin = "mailto:root@example.org"
            [store]
            sync = "never"
            "#,
        )
        .unwrap();
        assert_eq!(c.workers, 4);
        assert_eq!(c.driver, Driver::Epoll);
        assert_eq!(c.limits.login_timeout, Duration::from_secs(45));
        assert_eq!(c.limits.max_message_size, 25 << 20);
        assert_eq!(c.quota.limits(), QuotaLimits { storage: Some(1 << 30), messages: Some(100_000) });
        assert!(!c.quota.temporary);
        assert_eq!(c.metadata.limits(), MetadataLimits { max_value: 4096, ..MetadataLimits::default() });
        assert_eq!(c.metadata.admin.as_deref(), Some("mailto:root@example.org"));
        assert!(c.cleartext_allowed("10.1.2.3".parse().unwrap()));
        assert!(!c.cleartext_allowed("11.1.2.3".parse().unwrap()));
        assert!(c.cleartext_allowed("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Config::from_toml("bogus = 1").is_err());
    }
}
