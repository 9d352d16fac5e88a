//! The CAPABILITY list: only what works, and only what the connection's
//! state allows (no AUTH= mechanisms where cleartext passwords are refused).

use super::config::ConnFacts;

/// Capabilities of an authenticated session, besides IMAP4rev2/IMAP4rev1.
const AUTHENTICATED: &[&str] = &[
    "SASL-IR",
    "LITERAL+",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MULTIAPPEND",
    // RFC 5550: `;PARTIAL=` in the URLs CATENATE takes.
    "URL-PARTIAL",
    "CATENATE",
    "REPLACE",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "BINARY",
    "CONDSTORE",
    "QRESYNC",
    "STATUS=SIZE",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "WITHIN",
    "I18NLEVEL=1",
    "COMPRESS=DEFLATE",
    "UTF8=ACCEPT",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "PREVIEW",
    "PREVIEW=FUZZY",
    "SNIPPET=FUZZY",
    "METADATA",
    "OBJECTID",
    "NOTIFY",
    "SAVEDATE",
    "URLAUTH",
    "URLAUTH=BINARY",
];

pub fn list(authenticated: bool, facts: ConnFacts, starttls: bool, message_max: u64) -> String {
    let mut v = vec!["IMAP4rev2".to_string(), "IMAP4rev1".to_string()];
    if authenticated {
        v.extend(AUTHENTICATED.iter().map(|s| s.to_string()));
        v.push(format!("APPENDLIMIT={message_max}"));
        return format!("CAPABILITY {}", v.join(" "));
    }
    v.extend(["SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"].iter().map(|s| s.to_string()));
    if starttls && !facts.tls {
        v.push("STARTTLS".into());
    }
    if facts.tls || facts.cleartext_ok {
        v.push("AUTH=PLAIN".into());
        v.push("AUTH=LOGIN".into());
    } else {
        v.push("LOGINDISABLED".into());
    }
    format!("CAPABILITY {}", v.join(" "))
}
