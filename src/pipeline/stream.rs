use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::runtime::edge::{Edge, EdgeEnd, Recv};
use crate::runtime::signal::Signal;
use crate::SubscriberDemand;

/// A pipeline's output as a [`futures::Stream`], from
/// [`Pipeline::stream`](crate::Pipeline::stream).
///
/// Demand follows what the caller takes: the subscription asks upstream only
/// as items are pulled from the stream, so a caller that stops polling stops
/// the pipeline (after `max_demand` events). The stream ends when the
/// upstream does; a failed or cancelled run also just ends the stream, and
/// [`PipelineHandle::join`](crate::PipelineHandle::join) says why.
///
/// # Example
///
/// ```
/// use demandflow::{source, Pipeline, Subscribe};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..5u32));
/// let out = p.stream(&n, Subscribe::max_demand(2));
/// let handle = p.spawn().unwrap();
/// assert_eq!(out.collect::<Vec<_>>().await, vec![0, 1, 2, 3, 4]);
/// handle.join().await.unwrap();
/// # }
/// ```
pub struct PipelineStream<T> {
    edges: Vec<Arc<Edge<T>>>,
    /// One per edge: each subscription keeps its own accounting.
    demands: Vec<SubscriberDemand>,
    signal: Arc<Signal>,
    current: std::vec::IntoIter<T>,
    from: usize,
    next: usize,
    failed: Option<String>,
}

impl<T> fmt::Debug for PipelineStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineStream")
            .field("inputs", &self.edges.len())
            .field(
                "outstanding",
                &self.demands.iter().map(|d| d.outstanding()).sum::<usize>(),
            )
            .finish()
    }
}

impl<T> PipelineStream<T> {
    pub(crate) fn new(
        edges: Vec<Arc<Edge<T>>>,
        demands: Vec<SubscriberDemand>,
        signal: Arc<Signal>,
    ) -> Self {
        PipelineStream {
            edges,
            demands,
            signal,
            current: Vec::new().into_iter(),
            from: 0,
            next: 0,
            failed: None,
        }
    }

    /// Why the upstream ended, if it failed or was cancelled.
    pub fn upstream_error(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

// No field is structurally pinned: the stream only holds channels and a
// plain iterator.
impl<T> Unpin for PipelineStream<T> {}

impl<T> Stream for PipelineStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.current.next() {
                if let Some(d) = this.demands.get_mut(this.from) {
                    let ask = d.handled(1);
                    if ask > 0 {
                        this.edges[this.from].ask(ask, None);
                    }
                }
                return Poll::Ready(Some(item));
            }
            if this.edges.is_empty() {
                return Poll::Ready(None);
            }
            let n = this.edges.len();
            let mut progressed = false;
            for k in 0..n {
                let i = (this.next + k) % n;
                match this.edges[i].recv() {
                    Recv::Batch(b) => {
                        this.current = b.into_iter();
                        this.from = i;
                        this.next = (i + 1) % n;
                        progressed = true;
                        break;
                    }
                    Recv::Empty => {}
                    Recv::Ended(end) => {
                        if let EdgeEnd::Failed(e) = end {
                            this.failed.get_or_insert(e);
                        }
                        this.edges.remove(i);
                        this.demands.remove(i);
                        this.next = 0;
                        this.from = 0;
                        progressed = true;
                        break;
                    }
                }
            }
            if progressed {
                continue;
            }
            if this.signal.poll_notified(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T> Drop for PipelineStream<T> {
    fn drop(&mut self) {
        // Downstream cancellation reaches upstream: it stops serving us.
        for e in &self.edges {
            e.cancel();
        }
    }
}
