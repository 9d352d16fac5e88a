//! The client side of a backend's control port (`ringmail user move`, and
//! the backends asking each other for the moves they know): the handshake
//! of `cluster::control_auth`, then `wire` requests and answers.

use super::relocate::{MoveOp, MoveReply, PIECE};
use super::wire;

/// A connection to a backend's control port, past the handshake that
/// proves both sides know the cluster's secret.
pub struct ControlClient {
    stream: std::net::TcpStream,
}

impl ControlClient {
    /// Connects within `timeout`; each answer may then take up to
    /// [`ControlClient::ANSWER_TIMEOUT`] (a hold waits for commits, a
    /// listing with hashes reads every file).
    pub fn connect(addr: std::net::SocketAddr, secret: &[u8], timeout: std::time::Duration) -> Result<ControlClient, String> {
        use crate::cluster::control_auth as auth;
        use std::io::{Read, Write};
        let fail = |e: std::io::Error| format!("control port {addr}: {e}");
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
        stream.set_read_timeout(Some(timeout.max(std::time::Duration::from_secs(1)))).map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        let mut theirs = [0u8; auth::CHALLENGE];
        stream.read_exact(&mut theirs).map_err(fail)?;
        let mine = auth::challenge();
        let mut hello = auth::client_proof(secret, &theirs).to_vec();
        hello.extend_from_slice(&mine);
        stream.write_all(&hello).map_err(fail)?;
        let mut proof = [0u8; auth::PROOF];
        stream.read_exact(&mut proof).map_err(|e| format!("control port {addr} refused the cluster secret ({e})"))?;
        if !auth::server_is_genuine(secret, &mine, &proof) {
            return Err(format!("control port {addr} does not know the cluster secret"));
        }
        stream.set_read_timeout(Some(Self::ANSWER_TIMEOUT)).map_err(fail)?;
        Ok(ControlClient { stream })
    }

    pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

    /// Waits at most `d` for each answer from now on (a quick question
    /// that must not hang its asker).
    pub fn answer_within(self, d: std::time::Duration) -> Result<ControlClient, String> {
        self.stream.set_read_timeout(Some(d)).map_err(|e| format!("control connection: {e}"))?;
        Ok(self)
    }

    /// Runs `op` (with `data` for a Stage); the answer and its data.
    pub fn call(&mut self, op: MoveOp, data: &[Vec<u8>]) -> Result<(MoveReply, Vec<Vec<u8>>), String> {
        let io = |e: std::io::Error| format!("control connection: {e}");
        wire::write_request(&mut self.stream, &wire::Request::Move(op), data).map_err(io)?;
        match wire::read_reply(&mut self.stream, PIECE).map_err(io)? {
            (Ok(wire::Answer::Move(r)), data) => Ok((r, data)),
            (Ok(wire::Answer::Import(_)), _) => Err("the control port answered something else".into()),
            (Err(e), _) => Err(e),
        }
    }
}
