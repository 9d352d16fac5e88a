//! The import's operations ([`Op`]) run against a store: by `ringmail
//! import` itself when no server runs, and by the worker that owns the user
//! when one does (the control socket hands them over), so both paths are
//! one code. Messages are stored byte for byte with their UIDs, flags,
//! keywords and INTERNALDATE; every write is durable before it is answered
//! (the caller awaits the [`Ticket`]s).

use super::model::{content_hash, Digest, Incoming, Op, Reply, TargetBox, TargetList};
use crate::store::format::FlagChange;
use crate::store::{MailboxError, MailboxRef, Store, StoreError, Target, Ticket, UserStore};

/// One Digest step hashes this much (about 5 ms at XXH3's speed) or this
/// many messages, whichever comes first.
const DIGEST_STEP_BYTES: u64 = 32 << 20;
const DIGEST_STEP_MESSAGES: usize = 5000;

/// What an operation answered, and the commits to await before passing
/// the answer on.
pub struct Applied {
    pub reply: Reply,
    pub tickets: Vec<Ticket>,
}

fn mailbox_error(name: &str, e: MailboxError) -> String {
    match e {
        MailboxError::NonExistent => format!("no mailbox {name:?}"),
        MailboxError::NoSelect => format!("{name:?} is not selectable"),
        MailboxError::AlreadyExists => format!("{name:?} exists"),
        MailboxError::HasChildren => format!("{name:?} has children"),
        MailboxError::InvalidName(e) => format!("invalid mailbox name {name:?}: {e:?}"),
        MailboxError::Forbidden(why) => why.to_string(),
        MailboxError::Moving => format!("{name:?}: the user is moving to another server"),
        MailboxError::Io(e) => format!("{name:?}: {e}"),
    }
}

fn store_error(name: &str, e: StoreError) -> String {
    format!("{name:?}: {e}")
}

/// Runs `op` for its user; `data` holds an Append's message bytes.
pub fn execute(store: &Store, op: Op, data: Vec<Vec<u8>>, now: i64) -> Result<Applied, String> {
    let user_of = |user: &str| store.user(user, now).map_err(|e| format!("cannot open the mail of {user}: {e}"));
    let done = |reply| Ok(Applied { reply, tickets: Vec::new() });
    match op {
        Op::Mailboxes { user } => {
            let u = user_of(&user)?;
            let subscribed = u.subscriptions();
            let boxes = u
                .entries()
                .into_iter()
                .map(|e| TargetBox {
                    subscribed: subscribed.contains(&e.name),
                    name: e.name,
                    uidvalidity: e.uidvalidity,
                    noselect: e.noselect,
                    special_use: e.special_use,
                })
                .collect();
            done(Reply::Mailboxes(boxes))
        }
        Op::Prepare { user, mailbox, uidvalidity, special_use, subscribe } => {
            let u = user_of(&user)?;
            let mut tickets = Vec::new();
            match u.mailbox(&mailbox) {
                Ok(_) => {
                    if let Some(v) = uidvalidity {
                        u.adopt_uidvalidity(&mailbox, v).map_err(|e| mailbox_error(&mailbox, e))?;
                    }
                }
                Err(MailboxError::NonExistent | MailboxError::NoSelect) => {
                    u.create_with(&mailbox, special_use.as_deref(), uidvalidity, now).map_err(|e| mailbox_error(&mailbox, e))?;
                }
                Err(e) => return Err(mailbox_error(&mailbox, e)),
            }
            match subscribe {
                Some(true) if !u.is_subscribed(&mailbox) => u.subscribe(&mailbox).map_err(|e| mailbox_error(&mailbox, e))?,
                Some(false) if u.is_subscribed(&mailbox) => u.unsubscribe(&mailbox).map_err(|e| mailbox_error(&mailbox, e))?,
                _ => {}
            }
            let mb = u.mailbox(&mailbox).map_err(|e| mailbox_error(&mailbox, e))?;
            tickets.push(u.manifest_durable());
            Ok(Applied { reply: Reply::State(state(&mb)), tickets })
        }
        Op::List { user, mailbox } => {
            let mb = open(&user_of(&user)?, &mailbox)?;
            done(Reply::State(state(&mb)))
        }
        Op::Append { user, mailbox, msgs } => {
            if msgs.len() != data.len() || msgs.iter().zip(&data).any(|(m, d)| m.len != d.len() as u64) {
                return Err("message bytes do not match their descriptions".into());
            }
            let mb = open(&user_of(&user)?, &mailbox)?;
            let uids = append(&mb, &msgs, &data).map_err(|e| store_error(&mailbox, e))?;
            Ok(Applied { reply: Reply::Appended(uids), tickets: vec![store.durable(Target::Mailbox(mb))] })
        }
        Op::Flags { user, mailbox, changes } => {
            let mb = open(&user_of(&user)?, &mailbox)?;
            {
                // One change (one log record of UID runs) per set of flags
                // and keywords, not one per message.
                let mut m = mb.borrow_mut();
                let mut groups: std::collections::BTreeMap<(u8, u64), Vec<u32>> = Default::default();
                for (uid, flags, keywords) in changes {
                    let bits = keyword_bits(&mut m, &keywords).map_err(|e| store_error(&mailbox, e))?;
                    groups.entry((flags, bits)).or_default().push(uid);
                }
                for ((flags, bits), mut uids) in groups {
                    uids.sort_unstable();
                    m.change_flags(&uids, FlagChange::replace(flags, bits)).map_err(|e| store_error(&mailbox, e))?;
                }
            }
            Ok(Applied { reply: Reply::Done, tickets: vec![store.durable(Target::Mailbox(mb))] })
        }
        Op::Expunge { user, mailbox, uids } => {
            let mb = open(&user_of(&user)?, &mailbox)?;
            mb.borrow_mut().expunge(&uids).map_err(|e| store_error(&mailbox, e))?;
            Ok(Applied { reply: Reply::Done, tickets: vec![store.durable(Target::Mailbox(mb))] })
        }
        Op::Finish { user, mailbox, uidnext } => {
            let mb = open(&user_of(&user)?, &mailbox)?;
            mb.borrow_mut().raise_uidnext(uidnext).map_err(|e| store_error(&mailbox, e))?;
            Ok(Applied { reply: Reply::Done, tickets: vec![store.durable(Target::Mailbox(mb))] })
        }
        Op::Digest { user, mailbox, after } => {
            let mb = open(&user_of(&user)?, &mailbox)?;
            let m = mb.borrow();
            let start = m.msgs().partition_point(|x| x.uid <= after);
            let mut out = Vec::new();
            let mut hashed = 0u64;
            for msg in &m.msgs()[start..] {
                if hashed >= DIGEST_STEP_BYTES || out.len() >= DIGEST_STEP_MESSAGES {
                    break;
                }
                let bytes = m.message(msg).map_err(|e| format!("{mailbox:?} UID {}: {e}", msg.uid))?;
                let l = m.location(msg);
                let keywords = crate::store::keyword_names(m.keywords(), msg.keywords);
                out.push(Digest {
                    uid: msg.uid,
                    flags: msg.flags,
                    keywords,
                    internal_date: l.internal_date,
                    size: l.length,
                    hash: content_hash(bytes.bytes()),
                });
                hashed += l.length;
            }
            done(Reply::Digests(out))
        }
    }
}

fn open(u: &std::rc::Rc<UserStore>, name: &str) -> Result<MailboxRef, String> {
    u.mailbox(name).map_err(|e| mailbox_error(name, e))
}

fn state(mb: &MailboxRef) -> TargetList {
    let m = mb.borrow();
    TargetList {
        uidvalidity: m.uidvalidity(),
        uidnext: m.uidnext(),
        keywords: m.keywords().to_vec(),
        msgs: m.msgs().iter().map(|x| (x.uid, x.flags, x.keywords)).collect(),
    }
}

/// Keyword bits for names, defining the names the mailbox lacks.
fn keyword_bits(m: &mut crate::store::Mailbox, names: &[String]) -> Result<u64, StoreError> {
    let mut bits = 0u64;
    for k in names {
        if let Some(i) = m.keyword(k, true)? {
            bits |= 1 << i;
        }
    }
    Ok(bits)
}

/// Writes a batch with one log write: each message keeps its UID when it
/// is at least the UID the mailbox would give next, else gets that one.
fn append(mb: &MailboxRef, msgs: &[Incoming], data: &[Vec<u8>]) -> Result<Vec<u32>, StoreError> {
    let mut m = mb.borrow_mut();
    let mut next = m.uidnext();
    let mut batch = Vec::with_capacity(msgs.len());
    for (msg, bytes) in msgs.iter().zip(data) {
        let bits = keyword_bits(&mut m, &msg.keywords)?;
        let uid = msg.uid.filter(|&u| u >= next).unwrap_or(next);
        next = uid + 1;
        let mut h = m.begin_append(bytes.len() as u64)?;
        m.append_chunk(&mut h, bytes)?;
        batch.push((h, uid, msg.flags, bits, msg.internal_date));
    }
    m.finish_with_uids(batch)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::store::{MemIo, Settings};

    fn store() -> Store {
        Store::new(Rc::new(MemIo::new()), std::path::Path::new("/mail"), Settings::default())
    }

    fn run(s: &Store, op: Op, data: Vec<Vec<u8>>) -> Reply {
        let a = execute(s, op, data, 1_700_000_000).unwrap();
        s.run_pending();
        for t in a.tickets {
            crate::store::exec::block_on(t).unwrap();
        }
        a.reply
    }

    fn incoming(uid: u32, data: &[u8], flags: u8, keywords: &[&str]) -> Incoming {
        Incoming {
            uid: Some(uid),
            flags,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            internal_date: 1_600_000_000 + uid as i64,
            len: data.len() as u64,
        }
    }

    #[test]
    fn imported_messages_keep_uids_uidvalidity_flags_and_uidnext() {
        let s = store();
        let prep = |name: &str, uv| Op::Prepare { user: "u".into(), mailbox: name.into(), uidvalidity: Some(uv), special_use: None, subscribe: Some(true) };
        // The INBOX made for a new user takes the source's UIDVALIDITY.
        let Reply::State(st) = run(&s, prep("INBOX", 1234), vec![]) else { panic!() };
        assert_eq!((st.uidvalidity, st.uidnext), (1234, 1));
        let Reply::State(st) = run(&s, prep("Lists/rust", 99), vec![]) else { panic!() };
        assert_eq!(st.uidvalidity, 99);
        let msgs = vec![incoming(3, b"a\r\n", 1, &["$Label1"]), incoming(7, b"bb\r\n", 4, &[]), incoming(8, b"c\r\n", 0, &["$Label1", "Work"])];
        let data = vec![b"a\r\n".to_vec(), b"bb\r\n".to_vec(), b"c\r\n".to_vec()];
        let Reply::Appended(uids) = run(&s, Op::Append { user: "u".into(), mailbox: "INBOX".into(), msgs }, data) else { panic!() };
        assert_eq!(uids, [3, 7, 8]);
        run(&s, Op::Finish { user: "u".into(), mailbox: "INBOX".into(), uidnext: 12 }, vec![]);
        let Reply::State(st) = run(&s, Op::List { user: "u".into(), mailbox: "INBOX".into() }, vec![]) else { panic!() };
        assert_eq!(st.uidnext, 12, "RFC 9051 2.3.1.1: the source's expunged UIDs 9-11 are never given again");
        assert_eq!(st.msgs.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(), [(3, 1), (7, 4), (8, 0)]);
        assert_eq!(st.keyword_names(st.msgs[2].2), ["$Label1", "Work"]);
        // A UID below UIDNEXT cannot be kept: the message gets the next.
        let Reply::Appended(uids) =
            run(&s, Op::Append { user: "u".into(), mailbox: "INBOX".into(), msgs: vec![incoming(5, b"d", 0, &[])] }, vec![b"d".to_vec()])
        else {
            panic!()
        };
        assert_eq!(uids, [12]);
        // A mailbox that has held messages keeps its UIDVALIDITY.
        let Reply::State(st) = run(&s, prep("INBOX", 555), vec![]) else { panic!() };
        assert_eq!(st.uidvalidity, 1234);
        let Reply::Digests(d) = run(&s, Op::Digest { user: "u".into(), mailbox: "INBOX".into(), after: 0 }, vec![]) else { panic!() };
        let Reply::Digests(rest) = run(&s, Op::Digest { user: "u".into(), mailbox: "INBOX".into(), after: 8 }, vec![]) else { panic!() };
        assert_eq!(rest.iter().map(|d| d.uid).collect::<Vec<_>>(), [12]);
        assert_eq!(d[1], Digest { uid: 7, flags: 4, keywords: vec![], internal_date: 1_600_000_007, size: 4, hash: content_hash(b"bb\r\n") });
        let Reply::Mailboxes(b) = run(&s, Op::Mailboxes { user: "u".into() }, vec![]) else { panic!() };
        assert!(b.iter().any(|b| b.name == "Lists/rust" && b.subscribed && b.uidvalidity == 99));
    }

    #[test]
    fn flags_and_expunges_from_a_later_run() {
        let s = store();
        run(&s, Op::Prepare { user: "u".into(), mailbox: "INBOX".into(), uidvalidity: Some(7), special_use: None, subscribe: None }, vec![]);
        let msgs = vec![incoming(1, b"a", 0, &[]), incoming(2, b"b", 0, &[])];
        run(&s, Op::Append { user: "u".into(), mailbox: "INBOX".into(), msgs }, vec![b"a".to_vec(), b"b".to_vec()]);
        run(&s, Op::Flags { user: "u".into(), mailbox: "INBOX".into(), changes: vec![(2, 1, vec!["$Junk".into()])] }, vec![]);
        run(&s, Op::Expunge { user: "u".into(), mailbox: "INBOX".into(), uids: vec![1] }, vec![]);
        let Reply::State(st) = run(&s, Op::List { user: "u".into(), mailbox: "INBOX".into() }, vec![]) else { panic!() };
        assert_eq!(st.msgs.len(), 1);
        assert_eq!((st.msgs[0].0, st.msgs[0].1, st.keyword_names(st.msgs[0].2)), (2, 1, vec!["$Junk".to_string()]));
        // Bytes that do not match their description are refused.
        assert!(execute(&s, Op::Append { user: "u".into(), mailbox: "INBOX".into(), msgs: vec![incoming(9, b"abc", 0, &[])] }, vec![b"x".to_vec()], 0).is_err());
    }
}
