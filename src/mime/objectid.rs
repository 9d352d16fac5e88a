//! OBJECTID (RFC 8474): the identifiers of a message's content and of its
//! thread, made from the message alone so that they never change.
//!
//! EMAILID is a 128-bit hash of the message's bytes: a COPY or MOVE keeps
//! it, and two messages with the same bytes share it (5.1 allows that; it
//! is how Cyrus makes it). THREADID is a hash of the thread's first
//! Message-ID as the message's References (else In-Reply-To) name it, or
//! of its own Message-ID when it starts a thread: replies whose
//! References carry the whole chain, as RFC 5322 3.6.4 asks, share the
//! THREADID of their thread. (THREAD REFERENCES also joins threads by
//! subject and mends broken chains; THREADID does not, since it must
//! never change as other messages arrive.) A message without any
//! Message-ID is a thread of its own.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::sortkeys::SortKeysRef;

/// The EMAILID hash of a message.
pub fn email_hash(raw: &[u8]) -> u128 {
    xxh3_128(raw)
}

/// `M` and the hash in hex: an objectid (RFC 8474 4: letters, digits).
pub fn email_id(hash: u128) -> String {
    format!("M{hash:032x}")
}

/// The THREADID of a message with these sort keys and EMAILID hash.
pub fn thread_id(keys: Option<&SortKeysRef<'_>>, email: u128) -> String {
    let root = keys.and_then(|k| k.references().next().or(k.message_id));
    let h = match root {
        Some(id) => xxh3_64(id),
        None => email as u64,
    };
    format!("T{h:016x}")
}

#[cfg(test)]
mod tests {
    use crate::mime::{analyze, Cache};

    fn ids(raw: &[u8]) -> (String, String) {
        let blob = analyze(raw);
        Cache::parse(&blob).unwrap().object_ids(raw)
    }

    #[test]
    fn a_reply_shares_its_threads_id_and_identical_bytes_share_an_email_id() {
        let first = b"Message-ID: <a@x>\r\nSubject: q\r\n\r\nq\r\n";
        let reply = b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: q\r\n\r\nr\r\n";
        let second = b"Message-ID: <c@x>\r\nReferences: <a@x> <b@x>\r\nSubject: Re: q\r\n\r\ns\r\n";
        let other = b"Message-ID: <d@x>\r\nSubject: q\r\n\r\nq\r\n";
        let (e1, t1) = ids(first);
        assert_eq!(t1, ids(reply).1);
        assert_eq!(t1, ids(second).1);
        assert_ne!(t1, ids(other).1);
        assert_eq!(ids(first).0, e1);
        assert_ne!(ids(other).0, e1);
        assert!(e1.starts_with('M') && e1.len() == 33 && t1.starts_with('T'));
    }
}
