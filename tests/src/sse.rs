//! A bare server-sent-events client on a plain TCP socket, for the tests and the load
//! client that hold hundreds of `/api/events` streams at once: one thread and one socket
//! each, no HTTP library state, and a clone of the socket to cut the stream from outside.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// One open `GET` whose answer head has been read.
pub struct SseStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    /// The answer head, lowercased, for checking headers.
    pub head: String,
    chunked: bool,
    /// Decoded body bytes not yet parsed into lines.
    pending: Vec<u8>,
    ended: bool,
}

/// Cuts a stream from another thread: its reader then sees the end.
pub struct Cutter(TcpStream);

impl Cutter {
    pub fn cut(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl SseStream {
    /// `GET path` on `addr` (`127.0.0.1:PORT`), with the bearer `token` when given.
    /// `timeout` bounds every read, so a stream that goes silent fails instead of hanging.
    pub fn open(
        addr: &str,
        path: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> io::Result<SseStream> {
        let mut sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(timeout))?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n"
        )?;
        let mut reader = BufReader::new(sock);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed in the answer head: {head:?}"),
                ));
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
        let chunked = head.contains("transfer-encoding: chunked");
        Ok(SseStream {
            reader,
            status,
            head,
            chunked,
            pending: Vec::new(),
            ended: false,
        })
    }

    /// A handle that closes this stream's socket from elsewhere.
    pub fn cutter(&self) -> io::Result<Cutter> {
        Ok(Cutter(self.reader.get_ref().try_clone()?))
    }

    /// The whole body of a non-streamed answer (`content-length`).
    pub fn body(&mut self) -> io::Result<String> {
        let len: usize = self
            .head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Reads more of the body into `pending`; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if !self.chunked {
            let mut buf = [0u8; 16 * 1024];
            let n = self.reader.read(&mut buf)?;
            self.pending.extend_from_slice(&buf[..n]);
            self.ended = n == 0;
            return Ok(n > 0);
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size)? == 0 {
            self.ended = true;
            return Ok(false);
        }
        let size = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
        let start = self.pending.len();
        self.pending.resize(start + n, 0);
        self.reader.read_exact(&mut self.pending[start..])?;
        let mut crlf = [0u8; 2];
        self.reader.read_exact(&mut crlf)?;
        if n == 0 {
            // The last chunk: the server ended the stream on purpose.
            self.ended = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// True once the server sent the stream's last chunk (a clean end, not a cut).
    pub fn ended_cleanly(&self) -> bool {
        self.ended && self.chunked
    }

    /// The next event as (name, data), or `None` when the stream ended. Comments
    /// (keep-alives) are skipped.
    pub fn next_event(&mut self) -> io::Result<Option<(String, String)>> {
        let mut name = String::new();
        let mut data = String::new();
        loop {
            while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\r', '\n']);
                if line.is_empty() {
                    if !data.is_empty() || !name.is_empty() {
                        return Ok(Some((name, data)));
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }
}
