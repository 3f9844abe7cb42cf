//! The socket as hyper sees it, with one change: hyper answers a request it cannot parse
//! (bad header, duplicate Content-Length, 414, 431) with an empty body of its own, and
//! offers no hook to change it. Those answers are rewritten here into the
//! `{"error": ...}` every other error carries.
//!
//! Only when no request of ours is being answered on the connection, and only a head
//! with `content-length: 0` and no `content-type` (ours always have one) is replaced.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ConnState;

pub struct JsonRejections {
    inner: TcpStream,
    state: Arc<ConnState>,
    /// A rewritten answer not yet fully written.
    pending: Vec<u8>,
    written: usize,
}

impl JsonRejections {
    pub(super) fn new(inner: TcpStream, state: Arc<ConnState>) -> Self {
        JsonRejections {
            inner,
            state,
            pending: Vec::new(),
            written: 0,
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// hyper's automatic answer, if `buf` is one: its status line's code.
fn automatic_rejection(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let code: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !(400..500).contains(&code) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
    let empty = head.contains("\r\ncontent-length: 0");
    let typed = head.contains("\r\ncontent-type:");
    (empty && !typed && end + 4 == buf.len()).then_some(code)
}

fn rewrite(code: u16) -> Vec<u8> {
    let (reason, error) = match code {
        414 => ("URI Too Long", "request: the URI is too long"),
        431 => (
            "Request Header Fields Too Large",
            "request: the headers are too large",
        ),
        _ => (
            "Bad Request",
            "request: malformed HTTP (request line, a header, or Content-Length)",
        ),
    };
    let body = serde_json::json!({ "error": error }).to_string();
    format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for JsonRejections {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonRejections {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if this.state.active.load(Ordering::Acquire) == 0 {
            if let Some(code) = automatic_rejection(buf) {
                this.pending = rewrite(code);
                // Claimed written: hyper's bytes are replaced, ours go out in drain().
                let _ = this.drain(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    // Vectored, so hyper queues a response body's chunks as they are (a status-page frame
    // shared by hundreds of streams stays one allocation) instead of copying each into a
    // per-connection buffer. Its own rejections have an empty body: the head arrives as
    // the one non-empty slice, which is what automatic_rejection() needs to see.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if this.state.active.load(Ordering::Acquire) == 0 {
            let mut parts = bufs.iter().filter(|b| !b.is_empty());
            if let (Some(head), None) = (parts.next(), parts.next()) {
                if let Some(code) = automatic_rejection(head) {
                    this.pending = rewrite(code);
                    let _ = this.drain(cx)?;
                    return Poll::Ready(Ok(head.len()));
                }
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_untyped_answers_are_rewritten() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_rejection(hyper), Some(431));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_rejection(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_rejection(ok), None);
        let text = String::from_utf8(rewrite(414)).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("URI"));
        assert!(text.contains(&format!("content-length: {}", body.len())));
    }
}
