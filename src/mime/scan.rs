//! Finding the MIME parts of a message: one pass over its lines, no
//! recursion, linear in the message size whatever its shape.
//!
//! Why not mail-parser's part tree: it represents a nested message/rfc822
//! as a message inside a part inside a message, so a message nested ten
//! thousand deep is dropped (and walked) by recursion that overflows a
//! worker's stack; and it decodes every body while it parses, which IMAP
//! does not need. Here the parts are a flat list with parent links.
//!
//! The rules follow Dovecot's message parser, against which the golden
//! corpus is checked: a boundary is a line starting with `--` and the
//! boundary (a prefix match, as some mailers append junk), innermost
//! multipart first; the line end before a boundary line belongs to the
//! boundary; a multipart's body runs to its parent's next boundary, its
//! epilogue included; the parts of multipart/digest default to
//! message/rfc822; a multipart whose boundary never occurs is a leaf.
//! Deeper than [`MAX_DEPTH`] levels a part is a leaf (its boundaries are
//! plain text), and after [`MAX_PARTS`] parts no new part starts: the rest
//! is the body of the last one.

use super::content::{parse_type_value, transfer_of, Kind, Transfer};
use super::header;

/// Nesting levels (multiparts and messages) before parts become opaque leaves.
pub const MAX_DEPTH: usize = 100;
/// Parts per message before the rest is one part's body.
pub const MAX_PARTS: usize = 10_000;

/// One part of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// IMAP part number (RFC 9051 6.4.5); empty for a top-level multipart.
    pub path: Vec<u32>,
    /// Whether BODY[path] names this node: not for a top-level multipart,
    /// nor for the multipart body of a message/rfc822 part (which shares the
    /// number of the part around it).
    pub listed: bool,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Start of the part's MIME header, start of its body, end of its body.
    pub header: u32,
    pub body: u32,
    pub end: u32,
    pub kind: Kind,
    pub transfer: Transfer,
    /// Kind::Message: where the inner message's body starts.
    pub inner_body: u32,
    /// Content-Type defaults to message/rfc822 (a part of multipart/digest).
    pub in_digest: bool,
    /// Declared text/* (or no type at all): what BODY and TEXT searches look in.
    pub text: bool,
    /// A multipart or message past the nesting or part limits, kept as one
    /// opaque leaf (shown as application/octet-stream, as Dovecot does).
    pub opaque: bool,
}

/// An open multipart whose boundary lines are looked for.
struct Frame {
    boundary: Vec<u8>,
    node: usize,
    digest: bool,
}

/// Where the line end before `at` starts (a boundary line takes the CRLF
/// before it), or `at` if there is none.
fn before_line_end(raw: &[u8], at: usize) -> usize {
    if at >= 2 && &raw[at - 2..at] == b"\r\n" {
        at - 2
    } else if at >= 1 && raw[at - 1] == b'\n' {
        at - 1
    } else {
        at
    }
}

struct Scan<'a> {
    raw: &'a [u8],
    nodes: Vec<Node>,
    frames: Vec<Frame>,
    /// Open nodes from the root down; the last one gets the lines.
    open: Vec<usize>,
    /// The open node whose header is being read, if any.
    in_header: Option<usize>,
    /// Multiparts whose boundary occurred (the others are leaves).
    boundary_seen: Vec<bool>,
}

impl Scan<'_> {
    fn add(&mut self, parent: Option<usize>, header: usize, in_digest: bool) -> usize {
        self.nodes.push(Node {
            path: Vec::new(),
            listed: true,
            parent,
            children: Vec::new(),
            header: header as u32,
            body: header as u32,
            end: header as u32,
            kind: Kind::Leaf,
            transfer: Transfer::Identity,
            inner_body: header as u32,
            in_digest,
            text: !in_digest,
            opaque: false,
        });
        self.boundary_seen.push(false);
        let i = self.nodes.len() - 1;
        if let Some(p) = parent {
            self.nodes[p].children.push(i);
        }
        self.open.push(i);
        self.in_header = Some(i);
        i
    }

    /// Closes every open node below `keep` (a frame's multipart) at `end`.
    fn close_below(&mut self, keep: usize, end: usize) {
        while let Some(&n) = self.open.last() {
            if n == keep {
                return;
            }
            // A part that begins right at the next boundary (no header, no
            // body; the line break before the boundary is the boundary's)
            // is empty where it starts.
            let end = end.max(self.nodes[n].header as usize);
            if self.in_header == Some(n) {
                // The header never ended: it runs to the boundary, the body is empty.
                self.header_done(n, end, false);
            }
            // Likewise a body whose blank line is the boundary's line break.
            self.nodes[n].end = end.max(self.nodes[n].body as usize) as u32;
            self.open.pop();
        }
    }

    /// A boundary line: ends what it closes, starts the next part.
    fn boundary(&mut self, k: usize, at: usize, line_end: usize, after: &[u8]) {
        let end = before_line_end(self.raw, at);
        let node = self.frames[k].node;
        self.close_below(node, end);
        self.frames.truncate(k + 1);
        self.boundary_seen[node] = true;
        self.in_header = None;
        if after.starts_with(b"--") {
            // The close delimiter: what follows is the epilogue, still the
            // multipart's body.
            self.frames.pop();
        } else {
            let digest = self.frames[k].digest;
            self.add(Some(node), line_end, digest);
        }
    }

    /// Node `n`'s header ends and its body starts at `body`: what is the body?
    /// `may_open` is false when the part already ended (no room for children).
    fn header_done(&mut self, n: usize, body: usize, may_open: bool) {
        self.in_header = None;
        self.nodes[n].body = body as u32;
        self.nodes[n].inner_body = body as u32;
        let h = &self.raw[self.nodes[n].header as usize..body];
        let ct = header::first(h, "Content-Type").and_then(|v| parse_type_value(&v, true));
        let (ty, sub, params) = match ct {
            Some((tv, Some(sub))) => (tv.value, sub, tv.params),
            _ if self.nodes[n].in_digest => (b"message".to_vec(), b"rfc822".to_vec(), Vec::new()),
            _ => (b"text".to_vec(), b"plain".to_vec(), Vec::new()),
        };
        let transfer = transfer_of(header::first(h, "Content-Transfer-Encoding").as_deref());
        self.nodes[n].transfer = transfer;
        self.nodes[n].text = ty.eq_ignore_ascii_case(b"text");
        if !may_open {
            return;
        }
        let boundary = if ty.eq_ignore_ascii_case(b"multipart") {
            params.into_iter().find(|(k, _)| k.eq_ignore_ascii_case(b"boundary")).map(|(_, v)| v).filter(|b| !b.is_empty())
        } else {
            None
        };
        let message = ty.eq_ignore_ascii_case(b"message") && (sub.eq_ignore_ascii_case(b"rfc822") || sub.eq_ignore_ascii_case(b"global"));
        // An encoded message is opaque: its bytes are no message until decoded.
        let message = message && !matches!(transfer, Transfer::Base64 | Transfer::QuotedPrintable);
        if boundary.is_none() && !message {
            return;
        }
        if self.open.len() >= MAX_DEPTH || self.nodes.len() >= MAX_PARTS {
            self.nodes[n].opaque = true;
            self.nodes[n].text = false;
            return;
        }
        if let Some(boundary) = boundary {
            self.nodes[n].kind = Kind::Multipart;
            self.frames.push(Frame { boundary, node: n, digest: sub.eq_ignore_ascii_case(b"digest") });
        } else {
            self.nodes[n].kind = Kind::Message;
            self.add(Some(n), body, false);
        }
    }

    fn run(&mut self) {
        let raw = self.raw;
        self.add(None, 0, false);
        let mut at = 0usize;
        while at < raw.len() {
            let line_end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |p| at + p + 1);
            let line = &raw[at..line_end];
            if line.starts_with(b"--") && !self.frames.is_empty() && self.nodes.len() < MAX_PARTS {
                let rest = &line[2..];
                if let Some(k) = self.frames.iter().rposition(|f| rest.starts_with(&f.boundary)) {
                    let after = &rest[self.frames[k].boundary.len()..];
                    self.boundary(k, at, line_end, after);
                    at = line_end;
                    continue;
                }
            }
            if let Some(n) = self.in_header {
                if line == b"\r\n" || line == b"\n" {
                    self.header_done(n, line_end, true);
                }
            }
            at = line_end;
        }
        if let Some(n) = self.in_header {
            // No blank line: all header.
            self.header_done(n, raw.len(), true);
        }
        for n in std::mem::take(&mut self.open) {
            self.nodes[n].end = raw.len() as u32;
        }
        self.number();
    }

    /// Final kinds and IMAP part numbers, parents before children.
    fn number(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].kind == Kind::Multipart && !self.boundary_seen[i] {
                // A multipart whose boundary never occurs is a leaf (Dovecot too).
                self.nodes[i].kind = Kind::Leaf;
                self.nodes[i].children.clear();
            }
            let (path, listed) = match self.nodes[i].parent {
                None if self.nodes[i].kind == Kind::Multipart => (Vec::new(), false),
                None => (vec![1], true),
                Some(p) => {
                    let parent = &self.nodes[p];
                    let mut path = parent.path.clone();
                    match parent.kind {
                        Kind::Message if self.nodes[i].kind == Kind::Multipart => (path, false),
                        Kind::Message => {
                            path.push(1);
                            (path, true)
                        }
                        _ => {
                            let k = parent.children.iter().position(|&c| c == i).map_or(1, |k| k as u32 + 1);
                            path.push(k);
                            (path, true)
                        }
                    }
                }
            };
            self.nodes[i].path = path;
            self.nodes[i].listed = listed;
            if let Some(p) = self.nodes[i].parent {
                if self.nodes[p].kind == Kind::Message {
                    self.nodes[p].inner_body = self.nodes[i].body;
                }
            }
        }
    }
}

/// The parts of `raw`, the root first, every parent before its children.
pub fn parts(raw: &[u8]) -> Vec<Node> {
    let mut s = Scan { raw, nodes: Vec::new(), frames: Vec::new(), open: Vec::new(), in_header: None, boundary_seen: Vec::new() };
    s.run();
    s.nodes
}
