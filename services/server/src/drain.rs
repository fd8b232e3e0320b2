//! Draining a server that is stopping: once [`Drain::start`] is called, a
//! response stream waiting for its next message ends with `UNAVAILABLE`, so open
//! streams (health `Watch`, feeds) cannot hold the graceful drain open forever.
//! A unary answer never waits between messages, so it passes untouched.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tonic::{Status, body::Body};

/// The switch that starts the drain of every response body made by its layer.
#[derive(Debug)]
pub(crate) struct Drain {
    started: watch::Sender<bool>,
}

impl Drain {
    pub(crate) fn new() -> Self {
        Self {
            started: watch::channel(false).0,
        }
    }

    /// Ends every stream now waiting, and every one that waits from now on.
    pub(crate) fn start(&self) {
        self.started.send_replace(true);
    }

    /// Wraps every response body so that it ends when the drain starts.
    pub(crate) fn layer(
        &self,
    ) -> tower::util::MapResponseLayer<
        impl Fn(http::Response<Body>) -> http::Response<Body> + Clone + use<>,
    > {
        let started = self.started.subscribe();
        tower::util::MapResponseLayer::new(move |response: http::Response<Body>| {
            response.map(|inner| {
                Body::new(DrainBody {
                    inner,
                    started: started.clone(),
                    stopping: None,
                    ended: false,
                })
            })
        })
    }
}

/// A response body that ends with `UNAVAILABLE` trailers when the drain starts
/// while it waits for its next frame.
struct DrainBody {
    inner: Body,
    started: watch::Receiver<bool>,
    /// Made on the first wait only: a unary answer never allocates it.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ended: bool,
}

impl http_body::Body for DrainBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        // What the stream already has goes out first (a last health status).
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let started = &this.started;
        let stopping = this.stopping.get_or_insert_with(|| {
            let mut started = started.clone();
            Box::pin(async move {
                // A dropped switch (the server is gone) also ends the stream.
                let _ = started.wait_for(|started| *started).await;
            })
        });
        if stopping.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.ended = true;
        let mut trailers = http::HeaderMap::new();
        // A fixed ASCII message: adding it cannot fail.
        let _ = Status::unavailable("the server is shutting down").add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
