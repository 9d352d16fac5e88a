//! The commands a client can send, as plain owned data.
//!
//! These types say what was asked, not whether it is allowed: state gating and
//! meaning live in `session/`. Names are kept as the RFC spells them.

pub use super::seqset::{Ranges, SequenceSet};

/// How far below a requested entry GETMETADATA looks (RFC 5464 4.2.2):
/// the entry only, its children, or everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataDepth {
    #[default]
    Zero,
    One,
    Infinity,
}

/// A parsed command with its tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    // Any state (RFC 9051 6.1).
    Capability,
    Noop,
    Logout,
    // Not Authenticated (6.2).
    StartTls,
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    // Authenticated (6.3).
    Enable(Vec<String>),
    /// COMPRESS (RFC 4978) with its mechanism, upper-cased.
    Compress(String),
    /// QUOTA (RFC 9208): GETQUOTA root, GETQUOTAROOT mailbox, SETQUOTA
    /// root (resource limit ...).
    GetQuota(Vec<u8>),
    GetQuotaRoot(Mailbox),
    SetQuota {
        root: Vec<u8>,
        limits: Vec<(String, u64)>,
    },
    /// METADATA (RFC 5464): GETMETADATA [(MAXSIZE n DEPTH d)] mailbox
    /// entries, SETMETADATA mailbox (entry value ...) with NIL to remove.
    /// The mailbox "" is the server; entry names are checked and
    /// lower-cased.
    GetMetadata {
        mailbox: Mailbox,
        entries: Vec<String>,
        max_size: Option<u64>,
        depth: MetadataDepth,
    },
    SetMetadata {
        mailbox: Mailbox,
        values: Vec<(String, Option<Vec<u8>>)>,
    },
    /// NOTIFY (RFC 5465 3.1): NONE, or SET with what to tell.
    Notify(Option<NotifySet>),
    /// URLAUTH (RFC 4467): GENURLAUTH (url mechanism) ..., RESETKEY
    /// [mailbox [mechanism ...]], URLFETCH url ... (with RFC 5524's
    /// `(url [BINARY] [BODYPARTSTRUCTURE])` form).
    GenUrlAuth(Vec<(String, String)>),
    ResetKey(Option<(Mailbox, Vec<String>)>),
    UrlFetch(Vec<UrlFetchItem>),
    Select {
        mailbox: Mailbox,
        read_only: bool,
        params: SelectParams,
    },
    /// CREATE, with the special-use attributes of `(USE (...))` (RFC 6154
    /// 3), upper-cased.
    Create(Mailbox, Vec<String>),
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    List(ListArgs),
    /// RFC 3501 LSUB.
    Lsub {
        reference: Mailbox,
        pattern: Vec<u8>,
    },
    Namespace,
    /// APPEND with CATENATE (RFC 4469), MULTIAPPEND included: parsed with
    /// its literals, not streamed (those without CATENATE are). A REPLACE
    /// (RFC 8508) when `replace` is set.
    AppendWhole {
        mailbox: Mailbox,
        messages: Vec<AppendWhole>,
        replace: Option<Replace>,
    },
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Idle,
    /// RFC 2971; None is `ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),
    // Selected (6.4).
    Check,
    Close,
    Unselect,
    Expunge {
        uids: Option<SequenceSet>,
    },
    Copy {
        set: SequenceSet,
        mailbox: Mailbox,
        uid: bool,
    },
    Move {
        set: SequenceSet,
        mailbox: Mailbox,
        uid: bool,
    },
    Fetch {
        set: SequenceSet,
        items: Vec<FetchItem>,
        uid: bool,
        modifiers: FetchModifiers,
    },
    Store {
        set: SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<Flag>,
        uid: bool,
        unchanged_since: Option<u64>,
    },
    Search {
        ret: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        key: SearchKey,
        uid: bool,
    },
    /// SORT (RFC 5256), with ESORT's RETURN (RFC 5267).
    Sort {
        ret: Option<Vec<SearchReturn>>,
        criteria: Vec<SortCriterion>,
        charset: String,
        key: SearchKey,
        uid: bool,
    },
    /// THREAD (RFC 5256).
    Thread {
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
        uid: bool,
    },
    /// CANCELUPDATE (RFC 5267 4.4): the tags of the searches to stop updating.
    CancelUpdate(Vec<String>),
}

impl CommandBody {
    /// The command's name as clients write it, for logs and metrics.
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            Capability => "CAPABILITY",
            Noop => "NOOP",
            Logout => "LOGOUT",
            StartTls => "STARTTLS",
            Authenticate { .. } => "AUTHENTICATE",
            Login { .. } => "LOGIN",
            AppendWhole { replace: None, .. } => "APPEND",
            AppendWhole { replace: Some(_), .. } => "REPLACE",
            Enable(_) => "ENABLE",
            Compress(_) => "COMPRESS",
            GetQuota(_) => "GETQUOTA",
            GetQuotaRoot(_) => "GETQUOTAROOT",
            SetQuota { .. } => "SETQUOTA",
            GetMetadata { .. } => "GETMETADATA",
            SetMetadata { .. } => "SETMETADATA",
            Notify(_) => "NOTIFY",
            GenUrlAuth(_) => "GENURLAUTH",
            ResetKey(_) => "RESETKEY",
            UrlFetch(_) => "URLFETCH",
            Select { read_only: false, .. } => "SELECT",
            Select { read_only: true, .. } => "EXAMINE",
            Create(..) => "CREATE",
            Delete(_) => "DELETE",
            Rename { .. } => "RENAME",
            Subscribe(_) => "SUBSCRIBE",
            Unsubscribe(_) => "UNSUBSCRIBE",
            List(_) => "LIST",
            Lsub { .. } => "LSUB",
            Namespace => "NAMESPACE",
            Status { .. } => "STATUS",
            Idle => "IDLE",
            Id(_) => "ID",
            Check => "CHECK",
            Close => "CLOSE",
            Unselect => "UNSELECT",
            Expunge { uids: None } => "EXPUNGE",
            Expunge { uids: Some(_) } => "UID EXPUNGE",
            Copy { uid: false, .. } => "COPY",
            Copy { uid: true, .. } => "UID COPY",
            Move { uid: false, .. } => "MOVE",
            Move { uid: true, .. } => "UID MOVE",
            Fetch { uid: false, .. } => "FETCH",
            Fetch { uid: true, .. } => "UID FETCH",
            Store { uid: false, .. } => "STORE",
            Store { uid: true, .. } => "UID STORE",
            Search { uid: false, .. } => "SEARCH",
            Search { uid: true, .. } => "UID SEARCH",
            Sort { uid: false, .. } => "SORT",
            Sort { uid: true, .. } => "UID SORT",
            Thread { uid: false, .. } => "THREAD",
            Thread { uid: true, .. } => "UID THREAD",
            CancelUpdate(_) => "CANCELUPDATE",
        }
    }
}

/// A mailbox name as the client sent it (not yet decoded from modified
/// UTF-7; that depends on whether the session enabled IMAP4rev2 / UTF8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox(pub Vec<u8>);

impl Mailbox {
    pub fn is_inbox(&self) -> bool {
        self.0.eq_ignore_ascii_case(b"INBOX")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    /// `(CONDSTORE)` select parameter (RFC 7162 3.1.8).
    pub condstore: bool,
    /// `(QRESYNC (...))` (RFC 7162 3.2.5).
    pub qresync: Option<Qresync>,
}

/// What a client knew of a mailbox: `QRESYNC (uidvalidity modseq
/// [known-uids] [(known-sequence-set known-uid-set)])` (RFC 7162 3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// The UIDs the client knows (`*` is not allowed); None: all up to UIDNEXT-1.
    pub known_uids: Option<Ranges>,
    /// Message numbers and the UIDs they had for the client (3.2.5.2).
    pub seq_match: Option<(Ranges, Ranges)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    pub reference: Mailbox,
    pub patterns: Vec<Vec<u8>>,
    pub select_subscribed: bool,
    pub select_recursive: bool,
    pub select_special_use: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Option<Vec<StatusItem>>,
    /// Whether the extended syntax (selection or return options) was used.
    pub extended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
    /// RFC 9208 4.1.4.
    DeletedStorage,
    /// RFC 8474 4.
    MailboxId,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
            StatusItem::MailboxId => "MAILBOXID",
        }
    }
}

/// A message flag: a system flag or a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`: may appear in FETCH but cannot be stored.
    Recent,
    /// Any other `\Name`; RFC 9051 says servers reject these in STORE/APPEND.
    Extension(String),
    Keyword(String),
}

impl Flag {
    pub fn parse(s: &str) -> Flag {
        if let Some(name) = s.strip_prefix('\\') {
            match name.to_ascii_lowercase().as_str() {
                "seen" => Flag::Seen,
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "draft" => Flag::Draft,
                "recent" => Flag::Recent,
                _ => Flag::Extension(s.to_string()),
            }
        } else {
            Flag::Keyword(s.to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Extension(s) | Flag::Keyword(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Replace,
    Add,
    Remove,
}

/// One URL of URLFETCH: plain (RFC 4467), or with what RFC 5524 asks for
/// it (`(url BINARY BODYPARTSTRUCTURE)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFetchItem {
    pub url: String,
    /// Parenthesized: the answer is a list of the asked items.
    pub extended: bool,
    pub binary: bool,
    pub body_part_structure: bool,
}

/// `NOTIFY SET [STATUS] event-group ...` (RFC 5465 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySet {
    /// `STATUS`: send the current STATUS of the mailboxes named before
    /// the tagged OK.
    pub status: bool,
    pub groups: Vec<EventGroup>,
}

/// `(filter-mailboxes events)`; no events is `NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    /// As `Selected`, with expunges held until a command allows them.
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Mailbox>),
    Mailboxes(Vec<Mailbox>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// With the FETCH items to send for each new message (selected only).
    MessageNew(Vec<FetchItem>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// An event this server does not know (`event-ext`), upper-cased:
    /// answered NO [BADEVENT].
    Other(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchModifiers {
    /// `(CHANGEDSINCE n)` (RFC 7162 3.1.4).
    pub changed_since: Option<u64>,
    /// `VANISHED` (RFC 7162 3.2.6): also report expunged UIDs of the set.
    pub vanished: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    /// `BODY[...]`, `BODY.PEEK[...]`, and the RFC822 forms mapped onto them.
    BodySection {
        section: Section,
        partial: Option<(u64, u64)>,
        peek: bool,
        legacy: Legacy,
    },
    /// `BINARY[...]` / `BINARY.PEEK[...]` (RFC 3516).
    Binary {
        part: Vec<u32>,
        partial: Option<(u64, u64)>,
        peek: bool,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// EMAILID and THREADID (RFC 8474 5).
    EmailId,
    ThreadId,
    /// SAVEDATE (RFC 8514 4): when the message was saved into the mailbox.
    SaveDate,
    /// `PREVIEW [(LAZY)]` (RFC 8970 5), or a draft form Dovecot also
    /// answers: `PREVIEW (FUZZY)` and `SNIPPET [(FUZZY)]`.
    Preview(PreviewForm),
}

/// How a PREVIEW is asked for, and so answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewForm {
    /// `PREVIEW "text"`.
    Rfc8970,
    /// `PREVIEW (FUZZY "text")` (PREVIEW=FUZZY).
    FuzzyPreview,
    /// `SNIPPET (FUZZY "text")` (SNIPPET=FUZZY).
    FuzzySnippet,
}

/// How to name a body section in the response: RFC822 forms answer with
/// their own item names (RFC 3501 6.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    None,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// Part path, e.g. `[1, 2]` for `1.2`; empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields { not: bool, fields: Vec<String> },
    Text,
    Mime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// RFC 5267 4.4: the results at these positions (1-based, first <= last).
    Partial(u32, u32),
    /// RFC 5267 4.3: keep the result up to date (ESEARCH ADDTO/REMOVEFROM).
    Update,
    /// RFC 5267 4.2: a hint that the result will be used again.
    Context,
}

/// One SORT criterion (RFC 5256; DISPLAYFROM/DISPLAYTO from RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub key: SortKey,
    pub reverse: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// THREAD algorithms (RFC 5256; REFS as Dovecot offers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
    /// REFERENCES without the subject merging, threads ordered by their
    /// latest message.
    Refs,
}

/// A search key (RFC 9051 6.4.4, plus the RFC 3501 keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    /// Keys that must all match (`(a b c)` and the top-level list).
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    SequenceSet(SequenceSet),
    Uid(SequenceSet),
    /// A flag that must be set (`SEEN`, `KEYWORD x`, ...).
    Flag(Flag),
    /// A flag that must not be set (`UNSEEN`, `UNKEYWORD x`, ...).
    NotFlag(Flag),
    /// RFC 3501 `NEW` (recent and unseen), `OLD`, `RECENT`.
    New,
    Old,
    Recent,
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    /// SAVEDBEFORE / SAVEDON / SAVEDSINCE (RFC 8514 5): the save date's day.
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    /// SAVEDATESUPPORTED: every message of a mailbox that keeps save dates.
    SaveDateSupported,
    Larger(u64),
    /// EMAILID / THREADID objectid (RFC 8474 6).
    EmailId(String),
    ThreadId(String),
    Smaller(u64),
    /// WITHIN (RFC 5032): internal date more than / at most this many
    /// seconds before now.
    Older(u64),
    Younger(u64),
    /// `HEADER name value`; FROM/TO/CC/BCC/SUBJECT map onto this.
    Header(String, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    ModSeq(u64),
}

/// A calendar date (RFC 9051 `date`), without time or zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Days since 1970-01-01 (proleptic Gregorian), for comparisons.
    pub fn days(self) -> i64 {
        days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day))
    }
}

/// Days since the Unix epoch of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since the epoch (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A date-time with zone, as in APPEND (RFC 9051 `date-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// The zone offset in minutes east of UTC, kept for display.
    pub offset_minutes: i16,
}

/// One part of a CATENATE message (RFC 4469 5): text sent with the
/// command, or an IMAP URL of (a part of) a message on this server.
#[derive(Debug, Clone, PartialEq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

/// A message of an APPEND read whole with its command (one that uses
/// CATENATE, RFC 4469): its parts, or its one literal.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendWhole {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub parts: Vec<CatPart>,
}

/// The next message of a MULTIAPPEND (RFC 3502): what follows the previous
/// message's literal on the same command line.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendMore {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub size: u64,
    pub binary: bool,
    pub nonsync: bool,
    /// `UTF8 (~{n})` (RFC 6855 4): a message with UTF-8 header fields.
    pub utf8: bool,
}

/// The arguments of APPEND that come before the message literal.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendHeader {
    pub tag: String,
    pub mailbox: Mailbox,
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub size: u64,
    pub binary: bool,
    /// `{n+}`: the data follows without a continuation request.
    pub nonsync: bool,
    /// REPLACE (RFC 8508): the message the new one replaces.
    pub replace: Option<Replace>,
    /// `UTF8 (~{n})` (RFC 6855 4): a message with UTF-8 header fields.
    pub utf8: bool,
}

/// The message a REPLACE or UID REPLACE (RFC 8508 3) replaces in the
/// selected mailbox: one sequence number (or `*`), or one UID.
#[derive(Debug, Clone, PartialEq)]
pub struct Replace {
    pub message: SequenceSet,
    pub uid: bool,
}
