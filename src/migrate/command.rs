//! `ringmail import` and `ringmail export` as commands: checks, the run,
//! and the summary an admin reads at the end.

use super::engine::{self, Options, Summary};
use super::export::{self, Exported};
use super::maildir::Layout;
use super::model::Source;
use super::progress::Progress;
use super::state::State;
use super::target;
use crate::auth::passwd::normalize_user_name;
use crate::auth::UserDb;
use crate::config::Config;

fn known_user(config: &Config, user: &str) -> Result<String, String> {
    let db = UserDb::open(&config.users_file()).map_err(|e| e.to_string())?;
    let user = normalize_user_name(user);
    if db.lookup(&user).is_none() {
        return Err(format!("no user {user} (add it first: ringmail user add {user})"));
    }
    Ok(user)
}

/// Runs an import; the summary, or why it could not start or had to stop.
pub fn import(config: &Config, source: &dyn Source, user: &str, opts: &Options, quiet: bool) -> Result<Summary, String> {
    let user = known_user(config, user)?;
    let mut target = target::open(config)?;
    let where_ = target.describe();
    let mut state = if opts.dry_run { State::unsaved() } else { State::load(&config.data_dir, &user)? };
    let mut progress = Progress::new(quiet);
    let run = engine::run(source, &mut *target, &user, &mut state, opts, &mut progress);
    drop(target);
    // Run by root on the package's data directory: the files are the server's.
    crate::datadir::hand_back_mail(&config.data_dir, &crate::store::user_dir_name(&user), &[config.data_dir.join("import-state")])?;
    let s = run?;
    let secs = progress.elapsed().as_secs_f64();
    let verb = if opts.dry_run { "would import" } else { "imported" };
    eprintln!(
        "{verb} {} messages ({:.1} MB) into {} mailboxes of {user} through {where_} in {secs:.1} s ({:.1} MB/s)",
        s.messages,
        s.bytes as f64 / 1e6,
        s.mailboxes,
        s.bytes as f64 / 1e6 / secs.max(0.001)
    );
    eprintln!(
        "UIDs kept in {}/{} mailboxes; {} messages renumbered; flags updated on {}; {} expunged as on the source",
        s.kept_uids, s.mailboxes, s.renumbered, s.flags_updated, s.expunged
    );
    if !s.skipped.is_empty() {
        eprintln!("{} messages skipped (listed above); run the import again to retry after fixing the source", s.skipped.len());
    }
    if opts.verify {
        if s.mismatches.is_empty() {
            eprintln!("verified: every source message is stored with its UID, flags, INTERNALDATE and bytes");
        } else {
            for m in &s.mismatches {
                eprintln!("verify: {m}");
            }
            eprintln!("verify: {} differences", s.mismatches.len());
        }
    }
    Ok(s)
}

/// Writes `user`'s mail to `dir` as a Dovecot Maildir. With a server
/// running, reads what it has written so far, without disturbing it.
pub fn export(config: &Config, user: &str, dir: &std::path::Path, layout: Layout) -> Result<Exported, String> {
    let user = known_user(config, user)?;
    let (store, _lock) = target::read_view(config)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let e = export::export(&store, &user, dir, layout, now)?;
    for w in &e.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("exported {} messages ({:.1} MB) in {} mailboxes of {user} to {}", e.messages, e.bytes as f64 / 1e6, e.mailboxes, dir.display());
    Ok(e)
}
