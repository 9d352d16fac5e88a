//! Postfix's socketmap protocol (socketmap_table(5)), for
//! `transport_maps = socketmap:inet:HOST:PORT:transport`: each request is a
//! netstring `<len>:<map> <key>,`; each answer a netstring `OK <value>`,
//! `NOTFOUND `, `TEMP <why>` or `PERM <why>`. The value for a recipient is
//! the LMTP transport of the backend that owns it.

/// Requests are at most this long (Postfix's own limit is 100,000).
const MAX_REQUEST: usize = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    /// The map name, the key, and the request's length in bytes.
    Done {
        map: String,
        key: String,
        len: usize,
    },
    Invalid(&'static str),
}

pub fn parse(b: &[u8]) -> Parsed {
    let Some(colon) = b.iter().take(7).position(|&c| c == b':') else {
        return if b.len() >= 7 || b.iter().any(|c| !c.is_ascii_digit()) { Parsed::Invalid("not a netstring") } else { Parsed::Incomplete };
    };
    let Some(n) = std::str::from_utf8(&b[..colon]).ok().and_then(|s| s.parse::<usize>().ok()) else { return Parsed::Invalid("not a netstring") };
    if n > MAX_REQUEST {
        return Parsed::Invalid("request too long");
    }
    let end = colon + 1 + n;
    if b.len() <= end {
        return Parsed::Incomplete;
    }
    if b[end] != b',' {
        return Parsed::Invalid("netstring without its comma");
    }
    let Ok(body) = std::str::from_utf8(&b[colon + 1..end]) else { return Parsed::Invalid("request is not text") };
    let Some((map, key)) = body.split_once(' ') else { return Parsed::Invalid("no key") };
    Parsed::Done { map: map.to_string(), key: key.to_string(), len: end + 1 }
}

/// An answer as a netstring.
pub fn answer(text: &str) -> Vec<u8> {
    format!("{}:{text},", text.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_both_ways() {
        let req = b"27:transport alice@example.com,";
        assert_eq!(parse(req), Parsed::Done { map: "transport".into(), key: "alice@example.com".into(), len: req.len() });
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Parsed::Incomplete, "{cut}");
        }
        assert!(matches!(parse(b"27:transport alice@example.com;"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"x:"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"99999999:"), Parsed::Invalid(_)));
        assert_eq!(answer("OK lmtp:inet:10.0.0.2:24"), b"24:OK lmtp:inet:10.0.0.2:24,");
        assert_eq!(answer("NOTFOUND "), b"9:NOTFOUND ,");
    }
}
