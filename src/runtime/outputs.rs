//! The producer side of a stage: its dispatcher and outgoing edges.

use std::sync::Arc;

use super::edge::{Edge, EdgeEnd};
use super::shared::{Counters, StageShared};
use crate::dispatcher::{Decisions, Dispatcher, SubscriptionId};

pub(crate) struct Output<T> {
    pub(crate) id: SubscriptionId,
    pub(crate) edge: Arc<Edge<T>>,
    pub(crate) open: bool,
}

/// Most spare buffers a stage keeps.
const SPARE_MAX: usize = 4;

pub(crate) struct Outputs<T> {
    dispatcher: Box<dyn Dispatcher<T>>,
    list: Vec<Output<T>>,
    decisions: Decisions<T>,
    spare: Vec<Vec<T>>,
}

impl<T: Send + 'static> Outputs<T> {
    pub(crate) fn new(dispatcher: Box<dyn Dispatcher<T>>, list: Vec<Output<T>>) -> Outputs<T> {
        Outputs {
            dispatcher,
            list,
            decisions: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Collects new demand and cancellations from every subscriber and sends
    /// whatever buffered events that demand now allows. Returns whether any
    /// subscriber asked for more.
    pub(crate) fn collect(&mut self, stage: &StageShared) -> bool {
        let mut asked = false;
        let mut abandoned = 0;
        for out in &mut self.list {
            if !out.open {
                continue;
            }
            let (n, cancelled) = out.edge.take_demand();
            if cancelled {
                out.open = false;
                abandoned += self.dispatcher.cancel(out.id).unwrap_or(0);
            } else if n > 0 {
                asked = true;
                // Cannot fail: the id is registered and n > 0.
                let _ = self.dispatcher.ask(out.id, n);
            }
        }
        Counters::add(&stage.counters.abandoned, abandoned);
        if self.dispatcher.buffered() > 0 {
            self.dispatcher.flush(&mut self.decisions);
            self.deliver(stage);
        }
        asked
    }

    /// Routes freshly emitted events.
    pub(crate) fn emit(&mut self, events: Vec<T>, stage: &StageShared) {
        if events.is_empty() {
            self.recycle(events);
            return;
        }
        Counters::add(&stage.counters.emitted, events.len());
        self.dispatcher.dispatch(events, &mut self.decisions);
        self.deliver(stage);
    }

    fn deliver(&mut self, stage: &StageShared) {
        let mut abandoned = 0;
        for (id, batch) in self.decisions.drain(..) {
            let Some(out) = self.list.iter().find(|o| o.id == id) else {
                abandoned += batch.len();
                continue;
            };
            match out.edge.send(batch) {
                Ok(Some(buf)) if self.spare.len() < SPARE_MAX => self.spare.push(buf),
                Ok(_) => {}
                // The subscriber cancelled meanwhile: it will never take these.
                Err(batch) => abandoned += batch.len(),
            }
        }
        Counters::add(&stage.counters.abandoned, abandoned);
    }

    fn recycle(&mut self, buf: Vec<T>) {
        if self.spare.len() < SPARE_MAX && buf.capacity() > 0 {
            self.spare.push(buf);
        }
    }

    /// A reusable empty buffer.
    pub(crate) fn buffer(&mut self) -> Vec<T> {
        self.spare.pop().unwrap_or_default()
    }

    /// Events the stage may emit now.
    pub(crate) fn demand(&self) -> usize {
        self.dispatcher.demand()
    }

    /// Events waiting in the dispatcher for demand.
    pub(crate) fn buffered(&self) -> usize {
        self.dispatcher.buffered()
    }

    /// Whether any subscriber is still there.
    pub(crate) fn alive(&self) -> bool {
        self.list.iter().any(|o| o.open)
    }

    /// Ends every subscription. Returns the buffered events that will never
    /// be delivered.
    pub(crate) fn close(&mut self, end: EdgeEnd) -> usize {
        let mut abandoned = 0;
        for out in &mut self.list {
            if out.open {
                out.open = false;
                abandoned += self.dispatcher.cancel(out.id).unwrap_or(0);
            }
            out.edge.close(end.clone());
        }
        abandoned
    }
}
