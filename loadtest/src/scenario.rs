//! The scenarios: what one connection (or one session) does, recording
//! every operation's latency and every failure into its thread's
//! [`Ctx`]. They run against any IMAP server (LMTP for `lmtp`).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{connect, Conn, Done, Error, Imap, Pop3, Smtp};
use crate::stats::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Login,
    Session,
    Mix,
    Idle,
    Append,
    Lmtp,
    Populate,
    SlowReader,
    Pop3,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "login" => Scenario::Login,
            "session" => Scenario::Session,
            "mix" => Scenario::Mix,
            "idle" => Scenario::Idle,
            "append" => Scenario::Append,
            "lmtp" => Scenario::Lmtp,
            "populate" => Scenario::Populate,
            "slow-reader" => Scenario::SlowReader,
            "pop3" => Scenario::Pop3,
            _ => return Err(format!("unknown scenario {s:?}")),
        })
    }
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Login => "login",
            Scenario::Session => "session",
            Scenario::Mix => "mix",
            Scenario::Idle => "idle",
            Scenario::Append => "append",
            Scenario::Lmtp => "lmtp",
            Scenario::Populate => "populate",
            Scenario::SlowReader => "slow-reader",
            Scenario::Pop3 => "pop3",
        }
    }

    /// Whether each unit of work is a whole session (connect to LOGOUT).
    pub fn is_sessions(self) -> bool {
        matches!(self, Scenario::Login | Scenario::Session | Scenario::Pop3)
    }
}

/// Relative weights of the `mix` operations (like imaptest's profile).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights(pub Vec<(MixOp, u32)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixOp {
    List,
    Status,
    Select,
    Fetch,
    FetchBody,
    Store,
    Expunge,
    Append,
    Logout,
}

impl MixOp {
    const ALL: [(MixOp, &'static str); 9] = [
        (MixOp::List, "list"),
        (MixOp::Status, "status"),
        (MixOp::Select, "select"),
        (MixOp::Fetch, "fetch"),
        (MixOp::FetchBody, "fetch_body"),
        (MixOp::Store, "store"),
        (MixOp::Expunge, "expunge"),
        (MixOp::Append, "append"),
        (MixOp::Logout, "logout"),
    ];
}

impl Default for Weights {
    fn default() -> Self {
        use MixOp::*;
        Weights(vec![(List, 5), (Status, 10), (Select, 10), (Fetch, 30), (FetchBody, 15), (Store, 15), (Expunge, 5), (Append, 8), (Logout, 2)])
    }
}

impl std::str::FromStr for Weights {
    type Err = String;
    /// `fetch=30,store=15,...`; operations not named keep their default.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = Weights::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("weight {part:?} is not name=number"))?;
            let op = MixOp::ALL.iter().find(|(_, n)| *n == k.trim()).map(|(o, _)| *o).ok_or_else(|| format!("unknown mix operation {k:?}"))?;
            let v: u32 = v.trim().parse().map_err(|_| format!("weight {v:?} is not a number"))?;
            if let Some(e) = w.0.iter_mut().find(|(o, _)| *o == op) {
                e.1 = v;
            }
        }
        if w.0.iter().all(|(_, v)| *v == 0) {
            return Err("all weights are zero".into());
        }
        Ok(w)
    }
}

impl Weights {
    pub fn pick(&self, r: u64) -> MixOp {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = r % total.max(1);
        for (op, w) in &self.0 {
            if x < u64::from(*w) {
                return *op;
            }
            x -= u64::from(*w);
        }
        MixOp::Fetch
    }
}

/// Everything a run needs to know (shared by all threads).
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub target: SocketAddr,
    pub user_pattern: String,
    pub users: u32,
    /// First user number (`user%d` starts here).
    pub first_user: u32,
    pub password: String,
    pub mailbox: String,
    pub weights: Weights,
    pub seed: u64,
    /// populate: messages per user.
    pub messages: u32,
    /// append/lmtp/mix APPEND: messages are drawn from the first this many
    /// of the corpus (keeps the working set bounded).
    pub corpus_size: u32,
    pub timeout: Duration,
    pub sources: Vec<IpAddr>,
    /// lmtp: recipients per message.
    pub recipients: u32,
    /// slow-reader: bytes per second the slow connection reads.
    pub read_rate: u64,
    /// IMAP over TLS: implicit, or STARTTLS after the greeting.
    pub tls: crate::tls::Mode,
    /// The client configuration when `tls` is not Plain.
    pub tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// COMPRESS=DEFLATE right after LOGIN (timed as "COMPRESS").
    pub compress: bool,
    /// idle: register with NOTIFY (RFC 5465) for the selected mailbox and
    /// every other one, and wait without IDLE (timed as "NOTIFY").
    pub notify: bool,
}

impl Options {
    pub fn user(&self, i: u32) -> String {
        let n = (self.first_user + i % self.users.max(1)).to_string();
        if self.user_pattern.contains("%d") {
            self.user_pattern.replace("%d", &n)
        } else {
            self.user_pattern.clone()
        }
    }
}

/// State shared by all threads of a run.
#[derive(Default)]
pub struct Global {
    /// Connections opened (spreads source addresses and users).
    pub conn_seq: AtomicUsize,
    /// idle: connections currently in IDLE.
    pub idling: AtomicUsize,
    /// idle: the main thread says when to let go.
    pub release: AtomicBool,
    /// idle with memory measurement: connections numbered from `gate` on
    /// wait for `second_half`, so memory is measured at two levels.
    pub gate: AtomicUsize,
    pub second_half: AtomicBool,
    /// idle with memory measurement: users logged in once beforehand (so
    /// the server's credential cache is warm and password hashing's
    /// transient memory is gone before the baseline), and the go-ahead.
    pub primed: AtomicUsize,
    pub start_idle: AtomicBool,
    /// populate: next user to fill.
    pub next_user: AtomicU32,
    /// populate: messages appended.
    pub appended: AtomicU32,
    pub bytes: AtomicUsize,
    /// pop3: users with a session open now (POP3 servers lock a maildrop
    /// to one session, RFC 1939 4, as a real client never runs two).
    pub pop3_busy: std::sync::Mutex<std::collections::HashSet<u32>>,
}

/// Open loop: when each unit of work should start, from a fixed schedule.
pub struct Pacer {
    pub start: Instant,
    pub interval: Duration,
    next: Cell<u64>,
}

impl Pacer {
    pub fn new(start: Instant, per_sec: f64) -> Pacer {
        Pacer { start, interval: Duration::from_secs_f64(1.0 / per_sec.max(1e-6)), next: Cell::new(0) }
    }

    fn take(&self) -> Instant {
        let k = self.next.get();
        self.next.set(k + 1);
        self.start + self.interval.mul_f64(k as f64)
    }
}

/// One load thread's view: options, recorders, clock.
pub struct Ctx {
    pub opts: Arc<Options>,
    pub global: Arc<Global>,
    /// What counts (after warm-up).
    pub total: RefCell<Recorder>,
    /// Since the last live tick (warm-up included).
    pub live: RefCell<Recorder>,
    pub warmup_end: Instant,
    pub deadline: Instant,
    pub pacer: Option<Pacer>,
    rng: Cell<u64>,
    /// Corpus messages generated so far (generating one costs more than
    /// the server spends storing it, so each is made once per thread).
    corpus: RefCell<Vec<Option<Rc<[u8]>>>>,
}

impl Ctx {
    pub fn new(opts: Arc<Options>, global: Arc<Global>, warmup_end: Instant, deadline: Instant, pacer: Option<Pacer>, thread: usize) -> Rc<Ctx> {
        let seed = opts.seed ^ (thread as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let corpus = RefCell::new(vec![None; opts.corpus_size.max(1) as usize]);
        Rc::new(Ctx { opts, global, total: RefCell::default(), live: RefCell::default(), warmup_end, deadline, pacer, rng: Cell::new(seed | 1), corpus })
    }

    pub fn rand(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn counting(&self) -> bool {
        Instant::now() >= self.warmup_end
    }

    pub fn op(&self, name: &'static str, took: Duration) {
        self.live.borrow_mut().op(name, took);
        if self.counting() {
            self.total.borrow_mut().op(name, took);
        }
    }

    pub fn session(&self, took: Duration) {
        self.live.borrow_mut().session(took);
        if self.counting() {
            self.total.borrow_mut().session(took);
        }
    }

    pub fn error(&self, op: &str, e: &Error) {
        let label = e.label();
        self.live.borrow_mut().error(op, &label);
        // Errors count whenever they happen: warm-up failures are failures too.
        self.total.borrow_mut().error(op, &label);
    }

    pub fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// When the next unit of work starts: now (closed loop), or its slot in
    /// the schedule (open loop; latency is measured from that slot, so a
    /// server that falls behind shows as latency, not as a lower rate).
    pub async fn next_start(&self) -> Option<Instant> {
        let at = match &self.pacer {
            None => Instant::now(),
            Some(p) => p.take(),
        };
        if at >= self.deadline {
            return None;
        }
        let now = Instant::now();
        if at > now {
            monoio::time::sleep(at - now).await;
        }
        Some(at)
    }

    /// A new connection: the next source address in turn.
    pub async fn open(&self) -> Result<Conn, Error> {
        let n = self.global.conn_seq.fetch_add(1, Ordering::Relaxed);
        let source = (!self.opts.sources.is_empty()).then(|| self.opts.sources[n % self.opts.sources.len()]);
        let stream = connect(self.opts.target, source).await?;
        Ok(Conn::new(stream, self.opts.timeout))
    }

    /// A random message of the first `corpus_size` of the corpus.
    pub fn random_message(&self) -> Rc<[u8]> {
        let i = (self.rand() % u64::from(self.opts.corpus_size.max(1))) as usize;
        let mut c = self.corpus.borrow_mut();
        c[i].get_or_insert_with(|| ringmail_kit::corpus::message(self.opts.seed, i as u64).into()).clone()
    }
}

/// Runs `$fut`, recording its latency from `$start` under `$name`, or its
/// error; evaluates to the result.
macro_rules! timed {
    ($ctx:expr, $name:expr, $start:expr, $fut:expr) => {{
        let r = $fut.await;
        match &r {
            Ok(_) => $ctx.op($name, $start.elapsed()),
            Err(e) => $ctx.error($name, e),
        }
        r
    }};
}

/// A new connection, with the TLS handshake first if implicit TLS was
/// asked (timed on its own).
async fn open_maybe_tls(ctx: &Ctx) -> Result<Conn, Error> {
    let mut conn = ctx.open().await?;
    if let (crate::tls::Mode::Implicit, Some(cfg)) = (ctx.opts.tls, &ctx.opts.tls_config) {
        let h = Instant::now();
        timed!(ctx, "TLS handshake", h, conn.start_tls(cfg, ctx.opts.target.ip()))?;
    }
    Ok(conn)
}

/// The client configuration if STARTTLS (POP3's STLS) was asked.
fn starttls_config(ctx: &Ctx) -> Option<&Arc<rustls::ClientConfig>> {
    match ctx.opts.tls {
        crate::tls::Mode::StartTls => ctx.opts.tls_config.as_ref(),
        _ => None,
    }
}

/// Connects and reads the greeting (with TLS first, or STARTTLS after,
/// as asked); the handshake is also timed on its own.
async fn connect_imap(ctx: &Ctx) -> Result<Imap, Error> {
    let t = Instant::now();
    timed!(ctx, "connect", t, async {
        let mut imap = Imap::start(open_maybe_tls(ctx).await?).await?;
        if let Some(cfg) = starttls_config(ctx) {
            let h = Instant::now();
            timed!(ctx, "STARTTLS", h, imap.starttls(cfg, ctx.opts.target.ip()))?;
        }
        Ok(imap)
    })
}

async fn login(ctx: &Ctx, imap: &mut Imap, user: &str) -> Result<Done, Error> {
    let t = Instant::now();
    let done = timed!(ctx, "LOGIN", t, imap.login(user, &ctx.opts.password))?;
    if ctx.opts.compress {
        let t = Instant::now();
        timed!(ctx, "COMPRESS", t, imap.compress())?;
    }
    Ok(done)
}

async fn select(ctx: &Ctx, imap: &mut Imap) -> Result<u32, Error> {
    let t = Instant::now();
    let cmd = format!("SELECT {}", crate::conn::quote(&ctx.opts.mailbox));
    let done = timed!(ctx, "SELECT", t, imap.command(&cmd))?;
    Ok(done.exists.unwrap_or(0))
}

async fn logout(ctx: &Ctx, imap: &mut Imap) -> Result<(), Error> {
    let t = Instant::now();
    timed!(ctx, "LOGOUT", t, imap.logout())
}

/// `login`: connect, LOGIN, LOGOUT. `session` adds SELECT INBOX,
/// FETCH 1:* (FLAGS UID) and one message's BODY[].
pub async fn sessions(ctx: Rc<Ctx>, full: bool) {
    while let Some(start) = ctx.next_start().await {
        let user = ctx.opts.user(ctx.rand() as u32);
        if one_session(&ctx, &user, full).await.is_ok() {
            ctx.session(start.elapsed());
        }
    }
}

async fn one_session(ctx: &Ctx, user: &str, full: bool) -> Result<(), Error> {
    let mut imap = connect_imap(ctx).await?;
    login(ctx, &mut imap, user).await?;
    if full {
        let exists = select(ctx, &mut imap).await?;
        if exists > 0 {
            let t = Instant::now();
            timed!(ctx, "FETCH flags", t, imap.command("FETCH 1:* (FLAGS UID)"))?;
            let n = 1 + ctx.rand() % u64::from(exists);
            let t = Instant::now();
            timed!(ctx, "FETCH body", t, imap.command(&format!("FETCH {n} BODY[]")))?;
        }
    }
    logout(ctx, &mut imap).await
}

/// `pop3`: what a POP3 client checking for mail does: connect (TLS or
/// STLS as asked), USER/PASS, STAT, UIDL, RETR of up to three messages,
/// QUIT (which deletes nothing: no DELE).
pub async fn pop3_sessions(ctx: Rc<Ctx>) {
    while let Some(start) = ctx.next_start().await {
        // A user no other connection of this run has open (any user, once
        // there are more connections than users).
        let n = {
            let mut busy = ctx.global.pop3_busy.lock().expect("busy lock");
            let users = ctx.opts.users.max(1);
            let mut n = ctx.rand() as u32 % users;
            for _ in 0..users {
                if !busy.contains(&n) {
                    break;
                }
                n = (n + 1) % users;
            }
            busy.insert(n);
            n
        };
        let r = one_pop3_session(&ctx, &ctx.opts.user(n)).await;
        ctx.global.pop3_busy.lock().expect("busy lock").remove(&n);
        if r.is_ok() {
            ctx.session(start.elapsed());
        }
    }
}

async fn one_pop3_session(ctx: &Ctx, user: &str) -> Result<(), Error> {
    let t = Instant::now();
    let mut p = timed!(ctx, "connect", t, async {
        let mut p = Pop3::start(open_maybe_tls(ctx).await?).await?;
        if let Some(cfg) = starttls_config(ctx) {
            let h = Instant::now();
            timed!(ctx, "STLS", h, p.stls(cfg, ctx.opts.target.ip()))?;
        }
        Ok(p)
    })?;
    let t = Instant::now();
    timed!(ctx, "USER/PASS", t, async {
        p.command(&format!("USER {user}")).await?;
        p.command(&format!("PASS {}", ctx.opts.password)).await
    })?;
    let t = Instant::now();
    timed!(ctx, "STAT", t, p.command("STAT"))?;
    let t = Instant::now();
    let (messages, _) = timed!(ctx, "UIDL", t, p.multi("UIDL"))?;
    for _ in 0..messages.min(3) {
        let n = 1 + ctx.rand() % messages;
        let t = Instant::now();
        timed!(ctx, "RETR", t, p.multi(&format!("RETR {n}")))?;
    }
    let t = Instant::now();
    timed!(ctx, "QUIT", t, p.command("QUIT"))
}

/// `mix`: one long-lived session doing weighted operations; reconnects
/// after LOGOUT or an error.
pub async fn mix(ctx: Rc<Ctx>, conn_index: u32) {
    let user = ctx.opts.user(conn_index);
    'session: while !ctx.past_deadline() {
        let opened = async {
            let mut imap = connect_imap(&ctx).await?;
            login(&ctx, &mut imap, &user).await?;
            let exists = select(&ctx, &mut imap).await?;
            Ok::<_, Error>((imap, exists))
        }
        .await;
        let Ok((mut imap, mut exists)) = opened else {
            // Do not hammer a server that refuses us.
            monoio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            let Some(start) = ctx.next_start().await else { break };
            let mut op = ctx.opts.weights.pick(ctx.rand());
            if exists == 0 && matches!(op, MixOp::Fetch | MixOp::FetchBody | MixOp::Store | MixOp::Expunge) {
                op = MixOp::Append;
            }
            let n = 1 + ctx.rand() % u64::from(exists.max(1));
            let mbox = crate::conn::quote(&ctx.opts.mailbox);
            let r: Result<Done, Error> = match op {
                MixOp::List => timed!(ctx, "LIST", start, imap.command("LIST \"\" \"*\"")),
                MixOp::Status => timed!(ctx, "STATUS", start, imap.command(&format!("STATUS {mbox} (MESSAGES UNSEEN UIDNEXT)"))),
                MixOp::Select => timed!(ctx, "SELECT", start, imap.command(&format!("SELECT {mbox}"))),
                MixOp::Fetch => {
                    let last = (n + ctx.rand() % 10).min(u64::from(exists));
                    timed!(ctx, "FETCH", start, imap.command(&format!("FETCH {n}:{last} (UID FLAGS RFC822.SIZE ENVELOPE)")))
                }
                MixOp::FetchBody => timed!(ctx, "FETCH body", start, imap.command(&format!("FETCH {n} BODY.PEEK[]"))),
                MixOp::Store => {
                    let (sign, flag) = match ctx.rand() % 4 {
                        0 => ("+", "\\Seen"),
                        1 => ("-", "\\Seen"),
                        2 => ("+", "\\Flagged"),
                        _ => ("-", "\\Flagged"),
                    };
                    timed!(ctx, "STORE", start, imap.command(&format!("STORE {n} {sign}FLAGS.SILENT ({flag})")))
                }
                MixOp::Expunge => {
                    let r = timed!(ctx, "STORE", start, imap.command(&format!("STORE {n} +FLAGS.SILENT (\\Deleted)")));
                    match r {
                        Ok(d) => {
                            exists = track(exists, &d);
                            let t = Instant::now();
                            timed!(ctx, "EXPUNGE", t, imap.command("EXPUNGE"))
                        }
                        Err(e) => Err(e),
                    }
                }
                MixOp::Append => {
                    let msg = ctx.random_message();
                    timed!(ctx, "APPEND", start, imap.append(&ctx.opts.mailbox, "\\Seen", &msg))
                }
                MixOp::Logout => {
                    let _ = timed!(ctx, "LOGOUT", start, imap.logout());
                    continue 'session;
                }
            };
            match r {
                Ok(d) => exists = track(exists, &d),
                Err(_) => continue 'session,
            }
        }
        let _ = logout(&ctx, &mut imap).await;
    }
}

/// The message count after a reply's EXISTS and EXPUNGE responses.
fn track(exists: u32, d: &Done) -> u32 {
    d.exists.unwrap_or(exists).saturating_sub(d.expunged_after_exists)
}

/// `append`: one session appending corpus messages as fast as it can.
pub async fn append(ctx: Rc<Ctx>, conn_index: u32) {
    let user = ctx.opts.user(conn_index);
    while !ctx.past_deadline() {
        let Ok(mut imap) = connect_imap(&ctx).await else {
            monoio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if login(&ctx, &mut imap, &user).await.is_err() {
            monoio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        while let Some(start) = ctx.next_start().await {
            let msg = ctx.random_message();
            if timed!(ctx, "APPEND", start, imap.append(&ctx.opts.mailbox, "", &msg)).is_err() {
                break;
            }
        }
        let _ = logout(&ctx, &mut imap).await;
    }
}

/// `lmtp`: one LMTP connection delivering corpus messages to random users.
pub async fn lmtp(ctx: Rc<Ctx>) {
    while !ctx.past_deadline() {
        let t = Instant::now();
        let opened = timed!(ctx, "connect", t, async { Smtp::start(ctx.open().await?, true).await });
        let Ok(mut smtp) = opened else {
            monoio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Some(start) = ctx.next_start().await {
            let rcpts: Vec<String> = (0..ctx.opts.recipients.max(1)).map(|_| ctx.opts.user(ctx.rand() as u32)).collect();
            let msg = ctx.random_message();
            if timed!(ctx, "DELIVERY", start, smtp.deliver("load@example.net", &rcpts, &msg, true)).is_err() {
                break;
            }
        }
        let _ = smtp.conn.send(b"QUIT\r\n".to_vec()).await;
    }
}

/// `idle`: one connection logged in, INBOX selected, in IDLE until the
/// main thread releases it (after measuring the server's memory).
pub async fn idle(ctx: Rc<Ctx>, conn_index: u32) {
    if ctx.global.gate.load(Ordering::Relaxed) != usize::MAX {
        if conn_index < ctx.opts.users {
            let user = ctx.opts.user(conn_index);
            // Not timed or counted: it is not part of the measurement (a
            // failure shows up again when this user's IDLE connection logs in).
            let primed = async {
                let mut imap = Imap::start(ctx.open().await?).await?;
                imap.login(&user, &ctx.opts.password).await?;
                imap.logout().await
            };
            let _ = primed.await;
            ctx.global.primed.fetch_add(1, Ordering::Relaxed);
        }
        while !ctx.global.start_idle.load(Ordering::Relaxed) {
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while conn_index as usize >= ctx.global.gate.load(Ordering::Relaxed) && !ctx.global.second_half.load(Ordering::Relaxed) {
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
    let user = ctx.opts.user(conn_index);
    let setup = async {
        let mut imap = connect_imap(&ctx).await?;
        login(&ctx, &mut imap, &user).await?;
        select(&ctx, &mut imap).await?;
        let t = Instant::now();
        if ctx.opts.notify {
            timed!(ctx, "NOTIFY", t, imap.command(NOTIFY_SET))?;
            return Ok::<_, Error>((imap, None));
        }
        let tag = timed!(ctx, "IDLE", t, imap.idle())?;
        Ok::<_, Error>((imap, Some(tag)))
    };
    let Ok((mut imap, tag)) = setup.await else { return };
    ctx.global.idling.fetch_add(1, Ordering::Relaxed);
    imap.conn.release_buffer();
    while !ctx.global.release.load(Ordering::Relaxed) {
        monoio::time::sleep(Duration::from_millis(500)).await;
    }
    ctx.global.idling.fetch_sub(1, Ordering::Relaxed);
    let t = Instant::now();
    let done = match &tag {
        Some(tag) => timed!(ctx, "DONE", t, imap.done(tag)).is_ok(),
        None => true,
    };
    if done {
        let _ = logout(&ctx, &mut imap).await;
    }
}

/// What `idle --notify` asks to be told: what a desktop client watching
/// all folders asks (Thunderbird-style).
const NOTIFY_SET: &str = "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))";

/// `slow-reader`: connection 0 sends `FETCH 1:* BODY.PEEK[]` and reads
/// the answer at `read_rate` bytes per second until the deadline; the other
/// connections, logged in as the same user (so served by the same server
/// thread), send NOOPs, timed. A server that builds whole responses, or
/// lets one client's output hold its thread, shows up in the NOOP latency
/// and (with `--pid`) in its memory.
pub async fn slow_reader(ctx: Rc<Ctx>, conn_index: u32) {
    let user = ctx.opts.user(0);
    let setup = async {
        let mut imap = connect_imap(&ctx).await?;
        login(&ctx, &mut imap, &user).await?;
        select(&ctx, &mut imap).await?;
        Ok::<_, Error>(imap)
    };
    let Ok(mut imap) = setup.await else { return };
    if conn_index == 0 {
        // The answer is read raw, not parsed; its end is the tagged line,
        // found by its unusual tag at a line start.
        const TAG_LINE: &[u8] = b"\r\nzslowreader ";
        // A slice of the rate every 10 ms.
        let slice = (ctx.opts.read_rate / 100).max(1) as usize;
        let mut tail: Vec<u8> = Vec::new();
        let mut fetch_started = None;
        while !ctx.past_deadline() {
            if fetch_started.is_none() {
                if let Err(e) = imap.conn.send(b"zslowreader FETCH 1:* BODY.PEEK[]\r\n".to_vec()).await {
                    ctx.error("slow FETCH", &e);
                    return;
                }
                fetch_started = Some(Instant::now());
                tail = b"\r\n".to_vec();
            }
            let t = Instant::now();
            let mut got = 0;
            while got < slice && fetch_started.is_some() {
                match imap.conn.discard_last(slice - got, &mut tail).await {
                    Ok(n) => got += n,
                    Err(e) => {
                        ctx.error("slow FETCH", &e);
                        return;
                    }
                }
                if memchr::memmem::find(&tail, TAG_LINE).is_some() {
                    // The whole answer arrived: again, until the deadline.
                    if let Some(s) = fetch_started.take() {
                        ctx.op("slow FETCH", s.elapsed());
                    }
                }
            }
            ctx.global.bytes.fetch_add(got, Ordering::Relaxed);
            ctx.op("slow read", t.elapsed());
            monoio::time::sleep(Duration::from_millis(10).saturating_sub(t.elapsed())).await;
        }
        // Dropped mid-response: the server sees the connection go.
        return;
    }
    while let Some(start) = ctx.next_start().await {
        if timed!(ctx, "NOOP", start, imap.command("NOOP")).is_err() {
            return;
        }
    }
    let _ = logout(&ctx, &mut imap).await;
}

/// `populate`: fills users' mailboxes with the first `messages` of the
/// corpus (seeded per user), skipping what is already there.
pub async fn populate(ctx: Rc<Ctx>) {
    loop {
        let i = ctx.global.next_user.fetch_add(1, Ordering::Relaxed);
        if i >= ctx.opts.users {
            return;
        }
        let user = ctx.opts.user(i);
        let filled = async {
            let mut imap = connect_imap(&ctx).await?;
            login(&ctx, &mut imap, &user).await?;
            let mbox = crate::conn::quote(&ctx.opts.mailbox);
            let t = Instant::now();
            let have = timed!(ctx, "STATUS", t, imap.command(&format!("STATUS {mbox} (MESSAGES)")))?.messages.unwrap_or(0);
            for m in have..ctx.opts.messages {
                let msg = ringmail_kit::corpus::message(ctx.opts.seed ^ u64::from(i + ctx.opts.first_user), u64::from(m));
                let t = Instant::now();
                timed!(ctx, "APPEND", t, imap.append(&ctx.opts.mailbox, "", &msg))?;
                ctx.global.appended.fetch_add(1, Ordering::Relaxed);
                ctx.global.bytes.fetch_add(msg.len(), Ordering::Relaxed);
            }
            logout(&ctx, &mut imap).await
        };
        if filled.await.is_err() {
            // Counted; the user is retried by a later run (populate is idempotent).
        }
    }
}
