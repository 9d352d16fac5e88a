//! UserStore tests: the mailbox commands' storage side.

use super::*;

fn store() -> (Rc<MemIo>, Store, Rc<UserStore>) {
    let io = Rc::new(MemIo::new());
    let s = Store::new(io.clone(), Path::new("/d/mail"), Settings::default());
    let u = s.user("u", 1_000).unwrap();
    (io, s, u)
}

/// Waits for a ticket, running the store's commits.
fn wait(s: &Store, t: Ticket) -> std::io::Result<()> {
    s.run_pending();
    exec::block_on(t)
}

fn names(u: &UserStore) -> Vec<String> {
    u.entries().into_iter().map(|e| if e.noselect { format!("{}!", e.name) } else { e.name }).collect()
}

#[test]
fn new_users_get_special_use_mailboxes() {
    let (_, _s, u) = store();
    assert_eq!(names(&u), vec!["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]);
    let e = u.entries().into_iter().find(|e| e.name == "Sent").unwrap();
    assert_eq!(e.special_use.as_deref(), Some("\\Sent"));
    assert_eq!(u.subscriptions().len(), 6);
    let uvs: Vec<u32> = u.entries().iter().map(|e| e.uidvalidity).collect();
    let mut sorted = uvs.clone();
    sorted.dedup();
    assert_eq!(uvs.len(), sorted.len(), "every mailbox has its own UIDVALIDITY");
}

#[test]
fn create_makes_parents_and_refuses_duplicates() {
    let (_, _s, u) = store();
    u.create("a/b/c", None, 2_000).unwrap();
    assert!(names(&u).contains(&"a".to_string()));
    assert!(names(&u).contains(&"a/b".to_string()));
    assert!(matches!(u.create("a/b", None, 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.create("inbox", None, 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.create("x//y", None, 2_000), Err(MailboxError::InvalidName(_))));
    u.mailbox("a/b/c").unwrap();
}

#[test]
fn delete_rules() {
    let (_, _s, u) = store();
    assert!(matches!(u.delete("INBOX"), Err(MailboxError::Forbidden(_))));
    assert!(matches!(u.delete("nope"), Err(MailboxError::NonExistent)));
    u.create("p/c", None, 2_000).unwrap();
    u.delete("p").unwrap();
    assert!(names(&u).contains(&"p!".to_string()), "a mailbox with children becomes \\Noselect");
    assert!(matches!(u.mailbox("p"), Err(MailboxError::NoSelect)));
    assert!(matches!(u.delete("p"), Err(MailboxError::HasChildren)));
    u.delete("p/c").unwrap();
    assert!(!names(&u).iter().any(|n| n.starts_with('p')), "the placeholder goes with its last child");
}

#[test]
fn rename_moves_children_and_inbox_moves_messages() {
    let (_, _s, u) = store();
    u.create("old/kid", None, 2_000).unwrap();
    u.rename("old", "new/place", 2_000).unwrap();
    let n = names(&u);
    assert!(n.contains(&"new/place/kid".to_string()) && n.contains(&"new".to_string()) && !n.iter().any(|x| x.starts_with("old")));
    assert!(matches!(u.rename("new", "Sent", 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.rename("new", "new/x", 2_000), Err(MailboxError::Forbidden(_))));
    let inbox = u.mailbox("INBOX").unwrap();
    inbox.borrow_mut().append_bytes(b"Subject: x\r\n\r\nhi\r\n", 0, 0, 0).unwrap();
    wait(&_s, u.durable(&inbox)).unwrap();
    u.rename("INBOX", "Saved", 3_000).unwrap();
    assert_eq!(u.mailbox("Saved").unwrap().borrow().exists(), 1);
    assert_eq!(u.mailbox("INBOX").unwrap().borrow().exists(), 0);
}

#[test]
fn manifest_survives_crash_and_reopen() {
    let (io, s, u) = store();
    u.create("Work", None, 2_000).unwrap();
    u.subscribe("Work").unwrap();
    u.unsubscribe("Junk").unwrap();
    let before = io.crash(io::CrashMode::KeepUnsynced);
    assert!(!before.exists(Path::new("/d/mail/u/mailboxes")), "nothing is written before a commit");
    wait(&s, u.manifest_durable()).unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s2 = Store::new(crashed, Path::new("/d/mail"), Settings::default());
    let u2 = s2.user("u", 1_000).unwrap();
    assert!(names(&u2).contains(&"Work".to_string()));
    assert!(u2.subscriptions().contains("Work") && !u2.subscriptions().contains("Junk"));
}

/// Annotations (RFC 5464) are durable with the manifest: a crash before the
/// commit loses only unacknowledged ones; after it they stay, with the
/// mailbox id across RENAME, and a special use set through them too.
#[test]
fn metadata_survives_crash_and_follows_rename() {
    let (io, s, u) = store();
    let limits = metadata::Limits::default();
    let set = |u: &UserStore, mailbox: &str, k: &str, v: &[u8]| {
        u.set_metadata(u.metadata_owner(mailbox).unwrap(), &[(k.to_string(), Some(v.to_vec()))], limits).unwrap()
    };
    set(&u, "", "/private/comment", b"server note");
    set(&u, "Sent", "/shared/comment", b"line\r\n\0binary");
    set(&u, "Sent", SPECIAL_USE, b"\\Archive");
    u.rename("Sent", "Sent Items", 2_000).unwrap();
    let unsaved: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s1 = Store::new(unsaved, Path::new("/d/mail"), Settings::default());
    assert!(s1.user("u", 1_000).unwrap().metadata(metadata::SERVER, "/private/comment", Depth::Zero).is_empty(), "not committed: gone");
    wait(&s, u.manifest_durable()).unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s2 = Store::new(crashed, Path::new("/d/mail"), Settings::default());
    let u2 = s2.user("u", 1_000).unwrap();
    let get = |mailbox: &str, k: &str| u2.metadata(u2.metadata_owner(mailbox).unwrap(), k, Depth::Zero);
    assert_eq!(get("", "/private/comment"), [("/private/comment".to_string(), b"server note".to_vec())]);
    assert_eq!(get("Sent Items", "/shared/comment"), [("/shared/comment".to_string(), b"line\r\n\0binary".to_vec())]);
    assert_eq!(u2.entries().into_iter().find(|e| e.name == "Sent Items").unwrap().special_use.as_deref(), Some("\\Archive"));
    u2.delete("Sent Items").unwrap();
    u2.create("Sent Items", None, 3_000).unwrap();
    assert!(get("Sent Items", "/shared/comment").is_empty(), "a deleted mailbox's annotations go with it");
}

/// A new mailbox's messages count only once the mailbox is listed: the
/// mailbox's commit saves the list of mailboxes with it.
#[test]
fn mail_in_a_new_mailbox_survives_a_crash_with_the_mailbox() {
    let (io, s, u) = store();
    u.create("Lists/rust", None, 2_000).unwrap();
    let mb = u.mailbox("Lists/rust").unwrap();
    mb.borrow_mut().append_bytes(b"Subject: hi\r\n\r\nbody\r\n", 0, 0, 5).unwrap();
    wait(&s, u.durable(&mb)).unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s2 = Store::new(crashed, Path::new("/d/mail"), Settings::default());
    let u2 = s2.user("u", 1_000).unwrap();
    assert_eq!(u2.mailbox("Lists/rust").unwrap().borrow().exists(), 1);
}

/// DELETE removes the files only once the manifest without the mailbox is
/// durable; a crash before that leaves the mailbox whole.
#[test]
fn delete_removes_files_after_the_change_is_durable() {
    let (io, s, u) = store();
    let mb = u.mailbox("Trash").unwrap();
    mb.borrow_mut().append_bytes(b"Subject: junk\r\n\r\nx\r\n", 0, 0, 5).unwrap();
    wait(&s, u.durable(&mb)).unwrap();
    u.delete("Trash").unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s2 = Store::new(crashed, Path::new("/d/mail"), Settings::default());
    assert_eq!(s2.user("u", 1_000).unwrap().mailbox("Trash").unwrap().borrow().exists(), 1, "not durable: still there");
    wait(&s, u.manifest_durable()).unwrap();
    assert!(io.read_dir(Path::new("/d/mail/u/boxes")).unwrap().len() < 6, "files removed");
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s3 = Store::new(crashed, Path::new("/d/mail"), Settings::default());
    assert!(s3.user("u", 1_000).unwrap().mailbox("Trash").is_err());
}

/// Quota usage (RFC 9208) is the mailboxes' own totals: exact after a
/// crash (only what was durable counts), across compaction, and read from
/// mailboxes that are not open; claims keep two appends from both taking
/// the last room.
#[test]
fn quota_usage_is_exact_across_crash_and_compaction() {
    use crate::config::QuotaLimits;
    let limits = QuotaLimits { storage: Some(100_000), messages: Some(50) };
    let with_quota = |io: Rc<dyn Io>| {
        let mut s = Store::new(io, Path::new("/d/mail"), Settings::default());
        s.set_quota_source(Rc::new(move |_: &str| limits));
        s
    };
    let io = Rc::new(MemIo::new());
    let s = with_quota(io.clone());
    let u = s.user("u", 1_000).unwrap();
    let msg = |i: usize| format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(4000)).into_bytes();
    let (inbox, trash) = (u.mailbox("INBOX").unwrap(), u.mailbox("Trash").unwrap());
    let mut durable = quota::Usage::default();
    for i in 0..12 {
        let mb = if i % 3 == 0 { &trash } else { &inbox };
        let _claim = u.claim(1, msg(i).len() as u64).unwrap();
        mb.borrow_mut().append_bytes(&msg(i), 0, 0, 5).unwrap();
        durable.messages += 1;
        durable.bytes += msg(i).len() as u64;
    }
    wait(&s, u.durable(&inbox)).unwrap();
    wait(&s, u.durable(&trash)).unwrap();
    assert_eq!(u.quota_usage().unwrap(), durable);
    // Room for 100,000 bytes: 12 messages of 4,015 take 48,180; a claim of
    // 40,000 leaves too little for another of 20,000 until it is dropped.
    let held = u.claim(1, 40_000).unwrap();
    assert!(matches!(u.claim(1, 20_000), Err(StoreError::OverQuota)));
    drop(held);
    let _fits = u.claim(1, 20_000).unwrap();
    // Appended but never synced: gone after the crash, and not counted.
    inbox.borrow_mut().append_bytes(&msg(99), 0, 0, 5).unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let s2 = with_quota(crashed);
    let u2 = s2.user("u", 1_000).unwrap();
    // Read with neither mailbox open (each opened once, then remembered).
    assert_eq!(u2.quota_usage().unwrap(), durable);
    let inbox2 = u2.mailbox("INBOX").unwrap();
    let doomed: Vec<u32> = inbox2.borrow().msgs().iter().take(5).map(|m| m.uid).collect();
    inbox2.borrow_mut().expunge(&doomed).unwrap();
    let left = quota::Usage { messages: durable.messages - 5, bytes: durable.bytes - 5 * msg(1).len() as u64 };
    assert_eq!(u2.quota_usage().unwrap(), left);
    while !inbox2.borrow_mut().compact_step(10_000).unwrap() {}
    inbox2.borrow_mut().checkpoint().unwrap();
    assert_eq!(u2.quota_usage().unwrap(), left, "compaction moves mail without changing usage");
    assert_eq!(u2.quota_limits(), limits);
}

/// `ringmail user move`: a held user's files do not change. Writes made
/// before the hold still commit; after it, every write is refused (the
/// session answers NO [UNAVAILABLE], a delivery 451), the store is not
/// opened again, and no checkpoint or manifest write runs. Release serves
/// the user again.
#[test]
fn a_held_user_takes_no_writes_until_released() {
    let (io, s, u) = store();
    let mb = u.mailbox("INBOX").unwrap();
    mb.borrow_mut().append_bytes(b"Subject: before\r\n\r\nx\r\n", 0, 0, 5).unwrap();
    s.hold("u");
    assert!(!s.settled("u"), "the append before the hold is not durable yet");
    for t in s.durable_user("u") {
        wait(&s, t).unwrap();
    }
    assert!(s.settled("u"));
    let writes = io.counts();
    assert!(matches!(mb.borrow_mut().append_bytes(b"Subject: after\r\n\r\nx\r\n", 0, 0, 6), Err(StoreError::Moving)));
    assert!(matches!(mb.borrow_mut().change_flags(&[1], format::FlagChange::add(format::F_SEEN, 0)), Err(StoreError::Moving)));
    assert!(matches!(u.create("New", None, 7), Err(MailboxError::Moving)));
    assert!(matches!(u.subscribe("Junk"), Err(MailboxError::Moving)));
    assert!(u.urlauth_key(1, true).is_none());
    assert!(!mb.borrow().needs_checkpoint() && !mb.borrow_mut().compaction_due());
    assert!(mb.borrow_mut().checkpoint().is_ok());
    assert!(s.user("u", 8).is_err(), "not opened while held");
    s.run_pending();
    assert_eq!(io.counts(), writes, "nothing written or synced while held");
    s.release("u");
    mb.borrow_mut().append_bytes(b"Subject: released\r\n\r\nx\r\n", 0, 0, 9).unwrap();
    wait(&s, u.durable(&mb)).unwrap();
    assert_eq!(s.user("u", 9).unwrap().mailbox("INBOX").unwrap().borrow().exists(), 2);
}
