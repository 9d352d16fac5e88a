//! `ringmail export`: a user's mail as a Maildir that Dovecot reads as its
//! own, so leaving ringmail costs nothing: the INBOX in the root, folders as
//! `.Folder.Sub` (Maildir++, names in modified UTF-7) or `Folder/Sub`
//! (`LAYOUT=fs`), every message in `cur/` named the way Dovecot names
//! them (`S=` and `W=` sizes, flags after `:2,`) with its INTERNALDATE as
//! mtime, `dovecot-uidlist` (version 3) with each mailbox's UIDVALIDITY,
//! UIDNEXT and every file's UID, `dovecot-keywords`, and `subscriptions`.
//! Message bytes are written as stored (CRLF line ends, which Dovecot
//! serves unchanged). `ringmail import maildir` reads it back with the same
//! UIDs, flags and bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::maildir::{Layout, FLAG_LETTERS};
use crate::store::{Store, UserStore};

/// Maildir keywords are the letters a–z.
const MAX_MAILDIR_KEYWORDS: usize = 26;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Exported {
    pub mailboxes: usize,
    pub messages: u64,
    pub bytes: u64,
    /// Things the Maildir cannot hold (a 27th keyword): one line each.
    pub warnings: Vec<String>,
}

/// The directory of mailbox `name` under `root`.
pub fn folder_dir(root: &Path, name: &str, layout: Layout) -> Result<PathBuf, String> {
    if name == "INBOX" {
        return Ok(root.to_path_buf());
    }
    let levels: Vec<String> = name.split('/').map(crate::proto::utf7::encode).collect();
    match layout {
        Layout::MaildirPlusPlus => {
            if levels.iter().any(|l| l.contains('.')) {
                return Err(format!("mailbox {name:?} has a '.' in a name, which Maildir++ uses between levels; export with --layout fs"));
            }
            Ok(root.join(format!(".{}", levels.join("."))))
        }
        Layout::Fs => Ok(levels.iter().fold(root.to_path_buf(), |p, l| p.join(l))),
    }
}

fn create_maildir(dir: &Path) -> std::io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Writes `user`'s mailboxes under `root` (which must be empty or absent).
pub fn export(store: &Store, user: &str, root: &Path, layout: Layout, now: i64) -> Result<Exported, String> {
    if root.exists() && std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?.next().is_some() {
        return Err(format!("{} is not empty", root.display()));
    }
    let u = store.user(user, now).map_err(|e| format!("cannot open the mail of {user}: {e}"))?;
    let host = crate::delivery::system_hostname().replace(['/', ':', ','], "_");
    let mut out = Exported::default();
    create_maildir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for e in u.entries() {
        if e.noselect {
            continue;
        }
        let dir = folder_dir(root, &e.name, layout)?;
        export_mailbox(&u, &e.name, &dir, &host, &mut out).map_err(|err| format!("{}: {err}", e.name))?;
        out.mailboxes += 1;
    }
    let mut subs = String::from("V\t2\n\n");
    for s in u.subscriptions() {
        let levels: Vec<String> = s.split('/').map(crate::proto::utf7::encode).collect();
        subs.push_str(&levels.join("\t"));
        subs.push('\n');
    }
    std::fs::write(root.join("subscriptions"), subs).map_err(|e| format!("subscriptions: {e}"))?;
    // Everything written reaches the disk before the command says so.
    let f = std::fs::File::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    rustix::fs::syncfs(&f).map_err(|e| format!("sync: {e}"))?;
    Ok(out)
}

fn export_mailbox(u: &UserStore, name: &str, dir: &Path, host: &str, out: &mut Exported) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    create_maildir(dir).map_err(io)?;
    let mb = u.mailbox(name).map_err(|e| format!("{e:?}"))?;
    let m = mb.borrow();
    let keywords = m.keywords();
    if keywords.len() > MAX_MAILDIR_KEYWORDS {
        out.warnings.push(format!("{name}: keywords after the 26th ({}) cannot be kept in a Maildir", keywords[MAX_MAILDIR_KEYWORDS..].join(", ")));
    }
    let mut kw_file = String::new();
    for (i, k) in keywords.iter().take(MAX_MAILDIR_KEYWORDS).enumerate() {
        kw_file.push_str(&format!("{i} {k}\n"));
    }
    std::fs::write(dir.join("dovecot-keywords"), kw_file).map_err(io)?;
    let guid: u128 = rand::random();
    let mut uidlist = format!("3 V{} N{} G{guid:032x}\n", m.uidvalidity(), m.uidnext());
    for msg in m.msgs() {
        let bytes = m.message(msg).map_err(io)?;
        let bytes = bytes.bytes();
        let date = m.location(msg).internal_date;
        let base = format!("{}.M{}P{}.{host},S={},W={}", date.max(0), msg.uid, std::process::id(), bytes.len(), bytes.len());
        let mut info = String::new();
        for (letter, bit) in FLAG_LETTERS {
            if msg.flags & bit != 0 {
                info.push(letter);
            }
        }
        for i in 0..keywords.len().min(MAX_MAILDIR_KEYWORDS) {
            if msg.keywords & (1 << i) != 0 {
                info.push((b'a' + i as u8) as char);
            }
        }
        let path = dir.join("cur").join(format!("{base}:2,{info}"));
        let mut f = std::fs::File::create(&path).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(date.max(0) as u64);
        f.set_modified(mtime).map_err(io)?;
        uidlist.push_str(&format!("{} :{base}\n", msg.uid));
        out.messages += 1;
        out.bytes += bytes.len() as u64;
    }
    std::fs::write(dir.join("dovecot-uidlist"), uidlist).map_err(io)?;
    Ok(())
}
