//! POP3 command lines (RFC 1939 section 3; CAPA from RFC 2449, STLS from
//! RFC 2595, AUTH from RFC 5034): a keyword, case-insensitive, and its
//! arguments separated by single spaces.

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: a password may hold spaces.
    Pass(Vec<u8>),
    Apop,
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    /// Message, and how many lines of its body.
    Top(u32, u64),
    Uidl(Option<u32>),
    Capa,
    Stls,
    /// Without a mechanism: list them. With one: its name (upper case) and
    /// the initial response, still base64 (RFC 5034 4).
    Auth(Option<(String, Option<Vec<u8>>)>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Unknown(String),
    Syntax(&'static str),
}

fn number(arg: Option<&[u8]>) -> Result<u32, ParseError> {
    let a = arg.ok_or(ParseError::Syntax("Missing message number"))?;
    if a.is_empty() || a.len() > 10 || !a.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Syntax("Invalid message number"));
    }
    match std::str::from_utf8(a).ok().and_then(|s| s.parse::<u32>().ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(ParseError::Syntax("Invalid message number")),
    }
}

fn no_more(rest: &mut std::slice::Split<'_, u8, impl FnMut(&u8) -> bool>) -> Result<(), ParseError> {
    match rest.next() {
        None => Ok(()),
        Some(_) => Err(ParseError::Syntax("Too many arguments")),
    }
}

/// Parses one line, its CRLF (or LF) already cut off.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (word, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let keyword = String::from_utf8_lossy(word).to_ascii_uppercase();
    let mut parts = args.unwrap_or_default().split(|&b| b == b' ');
    let parts_of = |args: Option<&[u8]>| -> Vec<Vec<u8>> { args.map(|a| a.split(|&b| b == b' ').map(<[u8]>::to_vec).collect()).unwrap_or_default() };
    let optional = |args: Option<&[u8]>| -> Result<Option<u32>, ParseError> {
        match args {
            None => Ok(None),
            Some(a) if a.contains(&b' ') => Err(ParseError::Syntax("Too many arguments")),
            Some(a) => number(Some(a)).map(Some),
        }
    };
    let bare = |c: Command| match args {
        None => Ok(c),
        Some(_) => Err(ParseError::Syntax("Too many arguments")),
    };
    match keyword.as_str() {
        "USER" => match args {
            Some(a) if !a.is_empty() && !a.contains(&b' ') => Ok(Command::User(String::from_utf8_lossy(a).into_owned())),
            _ => Err(ParseError::Syntax("Invalid user name")),
        },
        "PASS" => match args {
            Some(a) => Ok(Command::Pass(a.to_vec())),
            None => Err(ParseError::Syntax("Missing password")),
        },
        "APOP" => Ok(Command::Apop),
        "QUIT" => bare(Command::Quit),
        "STAT" => bare(Command::Stat),
        "NOOP" => bare(Command::Noop),
        "RSET" => bare(Command::Rset),
        "CAPA" => bare(Command::Capa),
        "STLS" => bare(Command::Stls),
        "LIST" => optional(args).map(Command::List),
        "UIDL" => optional(args).map(Command::Uidl),
        "RETR" | "DELE" => {
            let n = number(parts.next())?;
            no_more(&mut parts)?;
            Ok(if keyword == "RETR" { Command::Retr(n) } else { Command::Dele(n) })
        }
        "TOP" => {
            let n = number(parts.next())?;
            let lines = parts
                .next()
                .filter(|a| !a.is_empty() && a.len() <= 19 && a.iter().all(u8::is_ascii_digit))
                .ok_or(ParseError::Syntax("Invalid number of lines"))?;
            no_more(&mut parts)?;
            let lines = std::str::from_utf8(lines).ok().and_then(|s| s.parse().ok()).ok_or(ParseError::Syntax("Invalid number of lines"))?;
            Ok(Command::Top(n, lines))
        }
        "AUTH" => {
            let v = parts_of(args);
            match v.as_slice() {
                [] => Ok(Command::Auth(None)),
                [m] if !m.is_empty() => Ok(Command::Auth(Some((String::from_utf8_lossy(m).to_ascii_uppercase(), None)))),
                [m, ir] if !m.is_empty() && !ir.is_empty() => Ok(Command::Auth(Some((String::from_utf8_lossy(m).to_ascii_uppercase(), Some(ir.clone()))))),
                _ => Err(ParseError::Syntax("Invalid AUTH arguments")),
            }
        }
        _ => Err(ParseError::Unknown(String::from_utf8_lossy(&word[..word.len().min(32)]).into_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse(b"user ann"), Ok(Command::User("ann".into())));
        assert_eq!(parse(b"PASS two words"), Ok(Command::Pass(b"two words".to_vec())));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 2 0"), Ok(Command::Top(2, 0)));
        assert_eq!(parse(b"UIDL 4294967295"), Ok(Command::Uidl(Some(u32::MAX))));
        assert_eq!(parse(b"AUTH"), Ok(Command::Auth(None)));
        assert_eq!(parse(b"AUTH plain AGEAYg=="), Ok(Command::Auth(Some(("PLAIN".into(), Some(b"AGEAYg==".to_vec()))))));
        assert_eq!(parse(b"auth login"), Ok(Command::Auth(Some(("LOGIN".into(), None)))));
        // RFC 1939: message numbers are 1 and up.
        for bad in [
            &b"RETR 0"[..],
            b"RETR",
            b"RETR -1",
            b"RETR +1",
            b"RETR 4294967296",
            b"RETR 1 2",
            b"DELE x",
            b"LIST 1 2",
            b"TOP 1",
            b"TOP 1 -2",
            b"STAT x",
            b"USER",
            b"USER a b",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::Syntax(_))), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"XYZZY 1"), Err(ParseError::Unknown("XYZZY".into())));
        assert_eq!(parse(b""), Err(ParseError::Unknown("".into())));
    }

    proptest::proptest! {
        /// Any line parses or is refused; none panics.
        #[test]
        fn any_line_is_parsed_or_refused(line in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&line);
        }
    }
}
