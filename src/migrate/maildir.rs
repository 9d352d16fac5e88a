//! Dovecot's Maildir as a source (and the names its export writes): the
//! INBOX in the root's `cur/` and `new/`, folders as `.Folder.Sub`
//! (Maildir++) or `Folder/Sub` (`LAYOUT=fs`), names in modified UTF-7,
//! `dovecot-uidlist` for UIDVALIDITY, UIDNEXT and each file's UID,
//! `dovecot-keywords` for the keyword letters, flags from the `:2,`
//! suffix, INTERNALDATE from the file's mtime (as Dovecot has it), and the
//! `subscriptions` file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::model::{Listing, Locator, Reader, Since, Source, SourceBox, SourceMsg};
use crate::store::format::{F_ANSWERED, F_DELETED, F_DRAFT, F_FLAGGED, F_SEEN};

/// Maildir flag letters and the IMAP flags they stand for (`P`, passed, has
/// none: Dovecot leaves it alone too).
pub const FLAG_LETTERS: [(char, u8); 5] = [('D', F_DRAFT), ('F', F_FLAGGED), ('R', F_ANSWERED), ('S', F_SEEN), ('T', F_DELETED)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `.Folder.Sub` beside the INBOX's `cur/`.
    MaildirPlusPlus,
    /// `Folder/Sub/cur`.
    Fs,
}

pub struct MaildirSource {
    root: PathBuf,
    layout: Layout,
}

fn is_maildir(p: &Path) -> bool {
    p.join("cur").is_dir() || p.join("new").is_dir()
}

impl MaildirSource {
    pub fn open(root: &Path, layout: Option<Layout>) -> Result<MaildirSource, String> {
        let entries = std::fs::read_dir(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
        let layout = match layout {
            Some(l) => l,
            None => {
                let (mut dotted, mut plain) = (false, false);
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !e.path().is_dir() || ["cur", "new", "tmp", ".", ".."].contains(&name.as_str()) {
                        continue;
                    }
                    if name.starts_with('.') && is_maildir(&e.path()) {
                        dotted = true;
                    } else if !name.starts_with('.') {
                        plain = true;
                    }
                }
                if plain && !dotted {
                    Layout::Fs
                } else {
                    Layout::MaildirPlusPlus
                }
            }
        };
        if !is_maildir(root) && layout == Layout::MaildirPlusPlus {
            return Err(format!("{} is not a Maildir (no cur/ or new/)", root.display()));
        }
        Ok(MaildirSource { root: root.to_path_buf(), layout })
    }

    /// Each mailbox's name and directory, the INBOX first.
    fn folders(&self) -> Result<Vec<(String, PathBuf, bool)>, String> {
        let mut out = Vec::new();
        let inbox_dir = if self.layout == Layout::Fs && is_maildir(&self.root.join("INBOX")) { self.root.join("INBOX") } else { self.root.clone() };
        if is_maildir(&inbox_dir) {
            out.push(("INBOX".to_string(), inbox_dir, true));
        }
        match self.layout {
            Layout::MaildirPlusPlus => {
                let rd = std::fs::read_dir(&self.root).map_err(|e| format!("cannot read {}: {e}", self.root.display()))?;
                let mut names = Vec::new();
                for e in rd.flatten() {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let Some(rest) = file.strip_prefix('.') else { continue };
                    if rest.is_empty() || rest == "." || !e.path().is_dir() {
                        continue;
                    }
                    names.push((folder_name(&rest.split('.').collect::<Vec<_>>()), e.path(), is_maildir(&e.path())));
                }
                names.sort();
                out.extend(names);
            }
            Layout::Fs => {
                let mut stack = vec![(self.root.clone(), Vec::<String>::new())];
                let mut names = Vec::new();
                while let Some((dir, path)) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&dir) else { continue };
                    for e in rd.flatten() {
                        let file = e.file_name().to_string_lossy().into_owned();
                        if !e.path().is_dir() || file.starts_with('.') || ["cur", "new", "tmp"].contains(&file.as_str()) {
                            continue;
                        }
                        if path.is_empty() && file == "INBOX" {
                            continue;
                        }
                        let mut p = path.clone();
                        p.push(file);
                        let parts: Vec<&str> = p.iter().map(String::as_str).collect();
                        names.push((folder_name(&parts), e.path(), is_maildir(&e.path())));
                        if p.len() < 64 {
                            stack.push((e.path(), p));
                        }
                    }
                }
                names.sort();
                out.extend(names);
            }
        }
        Ok(out)
    }

    /// The `subscriptions` file's names; None without the file.
    fn subscriptions(&self) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.root.join("subscriptions")).ok()?;
        let mut lines = text.lines().peekable();
        // Dovecot 2.3 writes "V\t2" first, then names with a tab between levels.
        let v2 = lines.peek().is_some_and(|l| l.starts_with("V\t"));
        if v2 {
            lines.next();
        }
        // Older files have the namespace's separator: '.' or '/' (a
        // Maildir++ name cannot hold a '.' of its own).
        let seps: &[char] = match (v2, self.layout) {
            (true, _) => &['\t'],
            (false, Layout::MaildirPlusPlus) => &['.', '/'],
            (false, Layout::Fs) => &['/'],
        };
        Some(lines.filter(|l| !l.is_empty()).map(|l| folder_name(&l.split(seps).collect::<Vec<_>>())).collect())
    }
}

/// A mailbox name from its levels on disk (modified UTF-7, RFC 3501 5.1.3).
fn folder_name(levels: &[&str]) -> String {
    let decoded: Vec<String> = levels.iter().map(|l| crate::proto::utf7::decode(l.as_bytes()).unwrap_or_else(|| l.to_string())).collect();
    let name = decoded.join("/");
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    name
}

impl Source for MaildirSource {
    fn id(&self) -> String {
        super::model::path_id("maildir", &self.root)
    }

    fn mailboxes(&self) -> Result<Vec<SourceBox>, String> {
        let subscribed = self.subscriptions();
        let mut out = Vec::new();
        for (name, dir, selectable) in self.folders()? {
            let header = if selectable { read_uidlist(&dir)?.map(|u| (u.uidvalidity, u.uidnext)) } else { None };
            out.push(SourceBox {
                subscribed: subscribed.as_ref().map(|s| s.contains(&name)),
                uidvalidity: header.map(|h| h.0),
                uidnext: header.map(|h| h.1),
                highest_modseq: None,
                special_use: None,
                noselect: !selectable,
                name,
            });
        }
        Ok(out)
    }

    fn reader(&self) -> Result<Box<dyn Reader>, String> {
        Ok(Box::new(MaildirReader { dirs: self.folders()?.into_iter().map(|(n, d, _)| (n, d)).collect() }))
    }
}

/// What `dovecot-uidlist` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UidList {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// File base name (before `:2,`) to UID.
    pub uids: HashMap<String, u32>,
}

/// Parses a `dovecot-uidlist` (versions 1 and 3); None if the file is
/// missing, so the mailbox has no UIDs yet.
pub fn read_uidlist(dir: &Path) -> Result<Option<UidList>, String> {
    let path = dir.join("dovecot-uidlist");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    parse_uidlist(&text).map(Some).ok_or_else(|| format!("{} is not a dovecot-uidlist this reads (versions 1 and 3)", path.display()))
}

pub fn parse_uidlist(text: &str) -> Option<UidList> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut u = UidList::default();
    let v3 = match *header.first()? {
        "1" => {
            u.uidvalidity = header.get(1)?.parse().ok()?;
            u.uidnext = header.get(2)?.parse().ok()?;
            false
        }
        "3" => {
            for f in &header[1..] {
                match f.split_at(1) {
                    ("V", v) => u.uidvalidity = v.parse().ok()?,
                    ("N", v) => u.uidnext = v.parse().ok()?,
                    _ => {}
                }
            }
            true
        }
        _ => return None,
    };
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else { continue };
        let Ok(uid) = uid.parse::<u32>() else { continue };
        let file = if v3 { rest.split_once(':').map(|(_, f)| f) } else { Some(rest.trim()) };
        if let Some(f) = file.filter(|f| !f.is_empty()) {
            u.uids.insert(f.to_string(), uid);
            u.uidnext = u.uidnext.max(uid + 1);
        }
    }
    (u.uidvalidity != 0).then_some(u)
}

/// `dovecot-keywords`: keyword names by letter index (a = 0).
pub fn read_keywords(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(text) = std::fs::read_to_string(dir.join("dovecot-keywords")) else { return out };
    for line in text.lines() {
        let Some((i, name)) = line.split_once(' ') else { continue };
        let Ok(i) = i.parse::<usize>() else { continue };
        if i < 26 {
            if out.len() <= i {
                out.resize(i + 1, String::new());
            }
            out[i] = name.to_string();
        }
    }
    out
}

/// The flags and keywords a file name's `:2,` part holds.
pub fn parse_info(file: &str, keywords: &[String]) -> (u8, Vec<String>) {
    let Some((_, info)) = file.split_once(":2,") else { return (0, Vec::new()) };
    let mut flags = 0;
    let mut kw = Vec::new();
    for c in info.chars() {
        if let Some(&(_, f)) = FLAG_LETTERS.iter().find(|(l, _)| *l == c) {
            flags |= f;
        } else if c.is_ascii_lowercase() {
            if let Some(k) = keywords.get((c as u8 - b'a') as usize).filter(|k| !k.is_empty()) {
                kw.push(k.clone());
            }
        }
    }
    (flags, kw)
}

struct MaildirReader {
    dirs: HashMap<String, PathBuf>,
}

impl MaildirReader {
    fn dir(&self, mailbox: &SourceBox) -> Result<&PathBuf, String> {
        self.dirs.get(&mailbox.name).ok_or_else(|| format!("mailbox {:?} is gone", mailbox.name))
    }
}

fn mtime(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
}

impl Reader for MaildirReader {
    fn list(&mut self, mailbox: &SourceBox, _since: Option<Since>) -> Result<Listing, String> {
        let dir = self.dir(mailbox)?.clone();
        let uidlist = read_uidlist(&dir)?.unwrap_or_default();
        let keywords = read_keywords(&dir);
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for sub in ["cur", "new"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') {
                    continue;
                }
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let base = file.split(':').next().unwrap_or(&file).to_string();
                let (flags, kw) = parse_info(&file, &keywords);
                let msg = SourceMsg { uid: 0, flags, keywords: kw, internal_date: mtime(&meta), size: meta.len(), at: Locator::File(e.path()) };
                match uidlist.uids.get(&base) {
                    Some(&uid) => known.push(SourceMsg { uid, ..msg }),
                    None => unknown.push((base, msg)),
                }
            }
        }
        known.sort_by_key(|m| m.uid);
        known.dedup_by_key(|m| m.uid);
        // Files Dovecot has not numbered yet get UIDs after its UIDNEXT, in
        // name order (delivery time first), as Dovecot would give them.
        unknown.sort_by(|a, b| a.0.cmp(&b.0));
        let first = uidlist.uidnext.max(known.last().map_or(1, |m| m.uid + 1));
        for (uid, (_, m)) in (first..).zip(unknown) {
            known.push(SourceMsg { uid, ..m });
        }
        Ok(Listing { msgs: known, all_uids: None })
    }

    fn fetch(&mut self, _mailbox: &SourceBox, msgs: &[SourceMsg]) -> Vec<Result<Vec<u8>, String>> {
        msgs.iter()
            .map(|m| {
                let Locator::File(path) = &m.at else { return Err("not a Maildir message".to_string()) };
                match std::fs::read(path) {
                    Ok(b) => Ok(b),
                    // Renamed meanwhile (its flags changed): find it by its base name.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => find_renamed(path).ok_or_else(|| format!("{}: {e}", path.display())),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                }
            })
            .collect()
    }
}

fn find_renamed(path: &Path) -> Option<Vec<u8>> {
    let file = path.file_name()?.to_string_lossy().into_owned();
    let base = file.split(':').next()?;
    let maildir = path.parent()?.parent()?;
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(maildir.join(sub)).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.split(':').next() == Some(base) {
                return std::fs::read(e.path()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlists_of_both_versions_parse() {
        let v3 = "3 V1700000001 N9 G0123abcd\n3 :1700.M1P2.h,S=10,W=12\n5 W120 :1701.M2P2.h,S=20\n";
        let u = parse_uidlist(v3).unwrap();
        assert_eq!((u.uidvalidity, u.uidnext), (1700000001, 9));
        assert_eq!(u.uids["1700.M1P2.h,S=10,W=12"], 3);
        assert_eq!(u.uids["1701.M2P2.h,S=20"], 5);
        let v1 = parse_uidlist("1 42 7\n6 1702.M3.h\n").unwrap();
        assert_eq!((v1.uidvalidity, v1.uidnext, v1.uids["1702.M3.h"]), (42, 7, 6));
        assert!(parse_uidlist("2 x").is_none());
        assert!(parse_uidlist("").is_none());
    }

    #[test]
    fn flag_letters_and_keyword_letters() {
        let kw = vec!["$Forwarded".to_string(), "Work".to_string()];
        assert_eq!(parse_info("1.M1.h,S=5:2,FRSb", &kw), (F_FLAGGED | F_ANSWERED | F_SEEN, vec!["Work".to_string()]));
        assert_eq!(parse_info("1.M1.h:2,PTa", &kw), (F_DELETED, vec!["$Forwarded".to_string()]));
        assert_eq!(parse_info("1.M1.h", &kw), (0, vec![]));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A LAYOUT=fs tree as Dovecot keeps it: folders as directories,
    /// the INBOX at the root, a file Dovecot has not numbered yet in new/.
    #[test]
    fn a_layout_fs_maildir_lists_its_folders_uids_flags_and_subscriptions() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["", "Lists", "Lists/rust", "Entw&APw-rfe"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(root.join(dir).join(sub)).unwrap();
            }
        }
        write(&root.join("cur/100.M1.h,S=3:2,S"), "a\nb");
        write(&root.join("new/200.M2.h"), "new\n");
        write(&root.join("dovecot-uidlist"), "3 V42 N8 Gx\n7 :100.M1.h,S=3\n");
        write(&root.join("Lists/rust/cur/300.M3.h:2,FRa"), "x");
        write(&root.join("Lists/rust/dovecot-keywords"), "0 $Work\n");
        write(&root.join("subscriptions"), "V\t2\n\nLists\trust\nEntw&APw-rfe\n");
        let src = MaildirSource::open(root, None).unwrap();
        assert_eq!(src.layout, Layout::Fs);
        let boxes = src.mailboxes().unwrap();
        let names: Vec<(&str, Option<bool>)> = boxes.iter().map(|b| (b.name.as_str(), b.subscribed)).collect();
        assert_eq!(names, [("INBOX", Some(false)), ("Entwürfe", Some(true)), ("Lists", Some(false)), ("Lists/rust", Some(true))]);
        assert_eq!((boxes[0].uidvalidity, boxes[0].uidnext), (Some(42), Some(8)));
        let mut r = src.reader().unwrap();
        let inbox = r.list(&boxes[0], None).unwrap().msgs;
        assert_eq!(inbox.iter().map(|m| (m.uid, m.flags)).collect::<Vec<_>>(), [(7, F_SEEN), (8, 0)], "the new file gets UIDNEXT");
        assert_eq!(r.fetch(&boxes[0], &inbox), [Ok(b"a\nb".to_vec()), Ok(b"new\n".to_vec())]);
        // Flags changed meanwhile (the file renamed): still found.
        std::fs::rename(root.join("cur/100.M1.h,S=3:2,S"), root.join("cur/100.M1.h,S=3:2,RS")).unwrap();
        assert_eq!(r.fetch(&boxes[0], &inbox[..1]), [Ok(b"a\nb".to_vec())]);
        let rust = r.list(&boxes[3], None).unwrap().msgs;
        assert_eq!((rust[0].flags, rust[0].keywords.clone()), (F_FLAGGED | F_ANSWERED, vec!["$Work".to_string()]));
        assert!(MaildirSource::open(&root.join("nothing"), None).is_err());
    }

    #[test]
    fn folder_names_are_decoded_from_modified_utf7() {
        assert_eq!(folder_name(&["Entw&APw-rfe", "alt"]), "Entwürfe/alt");
        assert_eq!(folder_name(&["inbox"]), "INBOX");
    }
}
