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
    pub(crate) buf: Vec<T>,
}

impl<T> Emitter<T> {
    /// An empty emitter. Stages receive theirs from the engine; this is for
    /// tests and adapters.
    pub fn new() -> Self {
        Emitter { buf: Vec::new() }
    }

    pub(crate) fn with_buffer(buf: Vec<T>) -> Self {
        debug_assert!(buf.is_empty());
        Emitter { buf }
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
        self.buf.len()
    }

    /// Whether nothing has been emitted since the engine last took events.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The events emitted so far, oldest first.
    pub fn as_slice(&self) -> &[T] {
        &self.buf
    }

    /// Takes the emitted events out, leaving the emitter empty.
    pub fn take(&mut self) -> Vec<T> {
        std::mem::take(&mut self.buf)
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
