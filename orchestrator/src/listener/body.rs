//! Body wrappers of the listener: a request body whose every piece must arrive in time,
//! and a response body that counts as "being answered" until it is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Holds one count in a connection's counter until dropped.
pub struct Active(Arc<AtomicUsize>);

impl Active {
    pub fn new(counter: &Arc<AtomicUsize>) -> Active {
        counter.fetch_add(1, Ordering::AcqRel);
        Active(counter.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("body: nothing arrived for {0:?}; the request was dropped")]
pub struct BodyTimeout(Duration);

/// A request body that fails when the client sends nothing for `timeout`, counted as
/// "receiving" until it ends.
struct Timed {
    inner: Incoming,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    receiving: Option<Active>,
}

pub fn timed(inner: Incoming, timeout: Duration, receiving: &Arc<AtomicUsize>) -> Body {
    if inner.is_end_stream() {
        return Body::new(inner);
    }
    Body::new(Timed {
        inner,
        timeout,
        sleep: Box::pin(tokio::time::sleep(timeout)),
        receiving: Some(Active::new(receiving)),
    })
}

impl HttpBody for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(next) => {
                let deadline = Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                if next.is_none() || this.inner.is_end_stream() {
                    this.receiving = None;
                }
                if matches!(next, Some(Err(_))) {
                    this.receiving = None;
                }
                Poll::Ready(next.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.receiving = None;
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`Active`] count until sent or dropped.
struct Guarded {
    inner: Body,
    _active: Active,
}

pub fn guarded(inner: Body, active: Active) -> Body {
    Body::new(Guarded {
        inner,
        _active: active,
    })
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
