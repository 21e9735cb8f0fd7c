/// Where a stage puts the events it emits.
///
/// An `Emitter` is a thin wrapper over a reusable `Vec`: [`Emitter::emit`]
/// costs one push, so emitting event by event costs no more than emitting a
/// batch. The engine turns what was emitted into batches for the stage's
/// subscribers and recycles the buffers.
///
/// # Example
///
/// ```
/// use demandflow::Emitter;
///
/// let mut out = Emitter::new();
/// out.emit(1u32);
/// out.extend([2, 3]);
/// assert_eq!(out.len(), 3);
/// assert_eq!(out.as_slice(), &[1, 2, 3]);
/// ```
#[derive(Debug)]
pub struct Emitter<T> {
    /// Everything emitted since the engine last took events. The engine may
    /// keep earlier calls' events here (a processor's output for several
    /// chunks of one input batch leaves as one batch) and moves `start`
    /// past them: the stage only ever sees `buf[start..]`.
    pub(crate) buf: Vec<T>,
    pub(crate) start: usize,
}

impl<T> Emitter<T> {
    /// An empty emitter. Stages receive theirs from the engine; this is for
    /// tests and adapters.
    pub fn new() -> Self {
        Emitter {
            buf: Vec::new(),
            start: 0,
        }
    }

    pub(crate) fn with_buffer(buf: Vec<T>) -> Self {
        debug_assert!(buf.is_empty());
        Emitter { buf, start: 0 }
    }

    /// Takes everything in the buffer, including the events kept behind
    /// `start`, leaving it empty.
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        self.start = 0;
        std::mem::take(&mut self.buf)
    }

    /// Keeps what was emitted so far (out of the stage's sight).
    pub(crate) fn keep(&mut self) {
        self.start = self.buf.len();
    }

    /// Discards what was emitted since the last `keep`.
    pub(crate) fn discard(&mut self) {
        self.buf.truncate(self.start);
    }

    /// Emits one event.
    #[inline]
    pub fn emit(&mut self, event: T) {
        self.buf.push(event);
    }

    /// Emits every event of `events`, in order.
    #[inline]
    pub fn extend<I: IntoIterator<Item = T>>(&mut self, events: I) {
        self.buf.extend(events);
    }

    /// Number of events emitted and not yet taken by the engine.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing has been emitted since the engine last took events.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.start
    }

    /// The events emitted so far, oldest first.
    pub fn as_slice(&self) -> &[T] {
        &self.buf[self.start..]
    }

    /// Takes the emitted events out, leaving the emitter empty.
    pub fn take(&mut self) -> Vec<T> {
        if self.start == 0 {
            std::mem::take(&mut self.buf)
        } else {
            self.buf.split_off(self.start)
        }
    }
}

impl<T> Default for Emitter<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Extend<T> for Emitter<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.buf.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_are_out_of_the_stage_sight() {
        let mut out = Emitter::with_buffer(Vec::with_capacity(8));
        out.extend([1, 2]);
        out.keep();
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        out.emit(3);
        assert_eq!(out.as_slice(), &[3]);
        out.discard();
        assert!(out.is_empty());
        out.emit(4);
        assert_eq!(out.take(), vec![4]);
        out.emit(5);
        assert_eq!(out.take_all(), vec![1, 2, 5]);
        assert!(out.is_empty() && out.buf.is_empty());
    }
}
