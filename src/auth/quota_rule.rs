//! Per-user quota from a passwd-file line's extra fields, in Dovecot's
//! form, so a Dovecot passwd-file brings its quotas along:
//!
//! ```text
//! joe:{SHA512-CRYPT}...::::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=*:messages=100000
//! ```
//!
//! Extra fields are the seventh colon-separated field, space-separated
//! `key=value` pairs; the keys `quota_rule`, `quota_rule2`, ... (with or
//! without the `userdb_` prefix) hold rules `MAILBOX:LIMIT=VALUE[:...]`.
//! ringmail has one quota root per user, so only `*` rules (the whole
//! account) count; rules for single mailboxes (`Trash:storage=+100M`) are
//! reported and ignored. Values as Dovecot reads them: `storage` in
//! kilobytes unless it has a unit (`b`, `k`, `M`, `G`, `T`), `bytes` in
//! bytes, `messages` a count; 0 means unlimited.

use crate::config::QuotaLimits;

/// What a line's extra fields set (a limit of 0 is `Some(None)`: set to
/// unlimited, overriding the configured default), and the rules it could
/// not use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserQuota {
    pub storage: Option<Option<u64>>,
    pub messages: Option<Option<u64>>,
    pub ignored: Vec<String>,
}

impl UserQuota {
    /// The limits for this user given the configured defaults.
    pub fn limits(&self, default: QuotaLimits) -> QuotaLimits {
        QuotaLimits { storage: self.storage.unwrap_or(default.storage), messages: self.messages.unwrap_or(default.messages) }
    }

    pub fn is_empty(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }
}

/// Reads the quota rules of a passwd-file line's fields after the hash
/// (`uid:gid:gecos:home:shell:extra`).
pub fn parse(rest: &str) -> UserQuota {
    let mut q = UserQuota::default();
    let Some(extra) = rest.splitn(6, ':').nth(5) else { return q };
    for field in extra.split_ascii_whitespace() {
        let Some((key, value)) = field.split_once('=') else { continue };
        let key = key.strip_prefix("userdb_").unwrap_or(key);
        let Some(n) = key.strip_prefix("quota_rule") else { continue };
        if !n.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if rule(value, &mut q).is_none() {
            q.ignored.push(field.to_string());
        }
    }
    q
}

/// One rule; None when it is not a whole-account rule ringmail can apply.
fn rule(value: &str, q: &mut UserQuota) -> Option<()> {
    let mut parts = value.split(':');
    if parts.next()? != "*" {
        return None;
    }
    let mut storage = q.storage;
    let mut messages = q.messages;
    for limit in parts {
        let (name, v) = limit.split_once('=')?;
        let zero_is_unlimited = |n: u64| (n > 0).then_some(n);
        match name.to_ascii_lowercase().as_str() {
            "storage" => storage = Some(zero_is_unlimited(size(v, 1024)?)),
            "bytes" => storage = Some(zero_is_unlimited(size(v, 1)?)),
            "messages" => messages = Some(zero_is_unlimited(size(v, 1)?)),
            _ => return None,
        }
    }
    q.storage = storage;
    q.messages = messages;
    Some(())
}

/// A number with an optional unit (`b`, `k`, `M`, `G`, `T`, any case);
/// without one it is counted in `unit`s.
fn size(v: &str, unit: u64) -> Option<u64> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, suffix) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match suffix.to_ascii_lowercase().as_str() {
        "" => unit,
        "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_rules_in_extra_fields() {
        let q = parse(":::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=*:messages=100000 userdb_mail=maildir:~/Maildir");
        assert_eq!(q.limits(QuotaLimits::default()), QuotaLimits { storage: Some(1 << 30), messages: Some(100_000) });
        assert!(q.ignored.is_empty());
        // Without the prefix, several limits in one rule, kilobytes by default.
        let q = parse("1000:1000::/home/joe:/bin/false:quota_rule=*:storage=2048:messages=50");
        assert_eq!(q.limits(QuotaLimits::default()), QuotaLimits { storage: Some(2 << 20), messages: Some(50) });
        assert_eq!(parse(":::::quota_rule=*:bytes=1000").storage, Some(Some(1000)));
    }

    #[test]
    fn defaults_fill_in_and_zero_means_unlimited() {
        let default = QuotaLimits { storage: Some(5 << 30), messages: Some(10) };
        assert_eq!(parse("").limits(default), default);
        assert_eq!(parse(":::::quota_rule=*:storage=0").limits(default), QuotaLimits { storage: None, messages: Some(10) });
        assert_eq!(parse(":::::quota_rule=*:messages=7").limits(default), QuotaLimits { storage: Some(5 << 30), messages: Some(7) });
    }

    #[test]
    fn rules_for_one_mailbox_or_unknown_limits_are_reported() {
        let q = parse(":::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=Trash:storage=+100M quota_rule3=*:storage=10% quota_rule4=*:ignore");
        assert_eq!(q.storage, Some(Some(1 << 30)));
        assert_eq!(q.ignored, ["userdb_quota_rule2=Trash:storage=+100M", "quota_rule3=*:storage=10%", "quota_rule4=*:ignore"]);
        // A line without extra fields has no rules.
        assert!(parse("1:2:gecos").is_empty());
    }
}
