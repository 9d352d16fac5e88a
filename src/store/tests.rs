//! UserStore tests: the mailbox commands' storage side.

use super::*;

fn store() -> (Rc<MemIo>, UserStore) {
    let io = Rc::new(MemIo::new());
    let u = UserStore::open(io.clone(), Path::new("/d/mail/u"), "u", Settings::default(), 1_000).unwrap();
    (io, u)
}

fn names(u: &UserStore) -> Vec<String> {
    u.entries().into_iter().map(|e| if e.noselect { format!("{}!", e.name) } else { e.name }).collect()
}

#[test]
fn new_users_get_special_use_mailboxes() {
    let (_, u) = store();
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
    let (_, u) = store();
    u.create("a/b/c", 2_000).unwrap();
    assert!(names(&u).contains(&"a".to_string()));
    assert!(names(&u).contains(&"a/b".to_string()));
    assert!(matches!(u.create("a/b", 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.create("inbox", 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.create("x//y", 2_000), Err(MailboxError::InvalidName(_))));
    u.mailbox("a/b/c").unwrap();
}

#[test]
fn delete_rules() {
    let (_, u) = store();
    assert!(matches!(u.delete("INBOX"), Err(MailboxError::Forbidden(_))));
    assert!(matches!(u.delete("nope"), Err(MailboxError::NonExistent)));
    u.create("p/c", 2_000).unwrap();
    u.delete("p").unwrap();
    assert!(names(&u).contains(&"p!".to_string()), "a mailbox with children becomes \\Noselect");
    assert!(matches!(u.mailbox("p"), Err(MailboxError::NoSelect)));
    assert!(matches!(u.delete("p"), Err(MailboxError::HasChildren)));
    u.delete("p/c").unwrap();
    assert!(!names(&u).iter().any(|n| n.starts_with('p')), "the placeholder goes with its last child");
}

#[test]
fn rename_moves_children_and_inbox_moves_messages() {
    let (_, u) = store();
    u.create("old/kid", 2_000).unwrap();
    u.rename("old", "new/place", 2_000).unwrap();
    let n = names(&u);
    assert!(n.contains(&"new/place/kid".to_string()) && n.contains(&"new".to_string()) && !n.iter().any(|x| x.starts_with("old")));
    assert!(matches!(u.rename("new", "Sent", 2_000), Err(MailboxError::AlreadyExists)));
    assert!(matches!(u.rename("new", "new/x", 2_000), Err(MailboxError::Forbidden(_))));
    let inbox = u.mailbox("INBOX").unwrap();
    inbox.borrow_mut().append_bytes(b"Subject: x\r\n\r\nhi\r\n", 0, 0, 0).unwrap();
    inbox.borrow_mut().commit().unwrap();
    u.rename("INBOX", "Saved", 3_000).unwrap();
    assert_eq!(u.mailbox("Saved").unwrap().borrow().exists(), 1);
    assert_eq!(u.mailbox("INBOX").unwrap().borrow().exists(), 0);
}

#[test]
fn manifest_survives_crash_and_reopen() {
    let (io, u) = store();
    u.create("Work", 2_000).unwrap();
    u.subscribe("Work").unwrap();
    u.unsubscribe("Junk").unwrap();
    let crashed: Rc<dyn Io> = Rc::new(io.crash(io::CrashMode::DropUnsynced));
    let u2 = UserStore::open(crashed, Path::new("/d/mail/u"), "u", Settings::default(), 1_000).unwrap();
    assert!(names(&u2).contains(&"Work".to_string()));
    assert!(u2.subscriptions().contains("Work") && !u2.subscriptions().contains("Junk"));
}
