//! The runtime's synchronisation types, through the crate's std ↔ loom switch.

pub(crate) use crate::loom::sync::{Mutex, MutexGuard};
