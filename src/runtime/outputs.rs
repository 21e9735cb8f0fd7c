//! The producer side of a stage: its dispatcher and outgoing edges.

use std::sync::Arc;

use super::edge::{Edge, EdgeEnd};
use super::late::{Attach, Pending};
use super::shared::{Counters, StageShared};
use crate::dispatcher::{Decisions, DispatchError, Dispatcher, SubscriptionId};

pub(crate) struct Output<T> {
    pub(crate) id: SubscriptionId,
    pub(crate) edge: Arc<Edge<T>>,
    pub(crate) open: bool,
    /// The partition it holds (partition dispatch), released on cancel.
    pub(crate) partition: Option<usize>,
}

/// Most spare buffers a stage keeps.
const SPARE_MAX: usize = 4;

pub(crate) struct Outputs<T> {
    dispatcher: Box<dyn Dispatcher<T>>,
    list: Vec<Output<T>>,
    decisions: Decisions<T>,
    spare: Vec<Vec<T>>,
    /// Late subscribers (a stage built with `late_subscribers`).
    late: Option<Late<T>>,
}

/// The outputs' side of late subscriptions (see `runtime::late`).
struct Late<T> {
    attach: Arc<Attach<T>>,
    /// Taken from `attach` but refused by the dispatcher because the
    /// partition's previous holder has cancelled and this stage has not yet
    /// seen it: retried at each collect, after the cancels.
    waiting: Vec<Pending<T>>,
    /// Whether a subscriber was ever here: a stage that must end with its
    /// last subscriber does not end before its first one came.
    had_subscriber: bool,
    /// A subscriber left since the list was last pruned.
    left: bool,
}

impl<T: Send + 'static> Outputs<T> {
    pub(crate) fn new(dispatcher: Box<dyn Dispatcher<T>>, list: Vec<Output<T>>) -> Outputs<T> {
        Outputs {
            dispatcher,
            list,
            decisions: Vec::new(),
            spare: Vec::new(),
            late: None,
        }
    }

    /// Lets subscribers attach through `attach` while the stage runs.
    pub(crate) fn with_late(mut self, attach: Option<Arc<Attach<T>>>) -> Outputs<T> {
        self.late = attach.map(|attach| Late {
            attach,
            waiting: Vec::new(),
            had_subscriber: !self.list.is_empty(),
            left: false,
        });
        self
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
                if let Some(late) = &mut self.late {
                    late.attach.release(out.partition, out.id);
                    late.left = true;
                }
            } else if n > 0 {
                asked = true;
                // Cannot fail: the id is registered and n > 0.
                let _ = self.dispatcher.ask(out.id, n);
            }
        }
        Counters::add(&stage.counters.abandoned, abandoned);
        if self.late.is_some() {
            self.adopt();
        }
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
        if self.late.is_some() {
            // Subscribers come and go while the producer is busy: those
            // that joined get these events too (they joined before the
            // events were emitted), and those that left get none of them
            // (routed to them, the events would be refused and abandoned).
            self.collect(stage);
        }
        // One batch for one subscriber, the usual case, skips the list of
        // decisions.
        if let Some(id) = self.dispatcher.route_whole(events.len()) {
            let abandoned = self.send(id, events);
            Counters::add(&stage.counters.abandoned, abandoned);
            return;
        }
        self.dispatcher.dispatch(events, &mut self.decisions);
        self.deliver(stage);
    }

    fn deliver(&mut self, stage: &StageShared) {
        let mut abandoned = 0;
        let mut decisions = std::mem::take(&mut self.decisions);
        for (id, batch) in decisions.drain(..) {
            abandoned += self.send(id, batch);
        }
        self.decisions = decisions;
        Counters::add(&stage.counters.abandoned, abandoned);
    }

    /// Sends one routed batch; returns how many of its events are
    /// abandoned (its subscriber has gone).
    fn send(&mut self, id: SubscriptionId, batch: Vec<T>) -> usize {
        let Some(out) = self.list.iter().find(|o| o.id == id) else {
            return batch.len();
        };
        match out.edge.send(batch) {
            Ok(Some(buf)) => {
                if self.spare.len() < SPARE_MAX {
                    self.spare.push(buf);
                }
                0
            }
            Ok(None) => 0,
            // The subscriber cancelled meanwhile: it will never take these.
            Err(batch) => batch.len(),
        }
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

    /// Whether any subscriber is still there (or, for a stage that accepts
    /// late subscribers, may still come: see `LastCancel`).
    pub(crate) fn alive(&self) -> bool {
        self.list.iter().any(|o| o.open)
            || self
                .late
                .as_ref()
                .is_some_and(|l| l.attach.wait || !l.had_subscriber || !l.waiting.is_empty())
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
        if let Some(late) = &mut self.late {
            late.attach.close(&end);
            for p in late.waiting.drain(..) {
                p.edge.close(end.clone());
            }
        }
        abandoned
    }

    // ------------------------------------------------ late subscriptions

    /// Registers the edges offered since the last collect with the
    /// dispatcher and collects their first demand. Subscriptions that have
    /// ended are dropped from the list, so a stage whose subscribers come
    /// and go does not grow with their number.
    fn adopt(&mut self) {
        let Some(late) = &mut self.late else { return };
        if std::mem::take(&mut late.left) {
            self.list.retain(|o| o.open);
        }
        if late.waiting.is_empty() && !late.attach.has_pending() {
            return;
        }
        late.waiting.extend(late.attach.take());
        for p in std::mem::take(&mut late.waiting) {
            match self.dispatcher.subscribe(p.id, p.spec.clone()) {
                Ok(()) => {
                    late.had_subscriber = true;
                    let mut out = Output {
                        id: p.id,
                        edge: p.edge,
                        open: true,
                        partition: p.spec.partition,
                    };
                    let (n, cancelled) = out.edge.take_demand();
                    if cancelled {
                        out.open = false;
                        let _ = self.dispatcher.cancel(out.id);
                        late.attach.release(out.partition, out.id);
                    } else if n > 0 {
                        // Cannot fail: the id was just registered and n > 0.
                        let _ = self.dispatcher.ask(out.id, n);
                    }
                    self.list.push(out);
                }
                // The previous holder cancelled (that is how `Attach` let
                // this one in) and its cancel reaches the dispatcher at the
                // next collect.
                Err(DispatchError::PartitionTaken(_)) => late.waiting.push(p),
                Err(e) => {
                    late.attach.release(p.spec.partition, p.id);
                    p.edge.close(EdgeEnd::Failed(e.to_string()));
                }
            }
        }
    }
}
