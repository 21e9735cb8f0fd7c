//! In-crate tests of the synchronised push buffer: loom models of the
//! concurrent cases and unit tests that need crate internals.

#[cfg(loom)]
mod loom_push;
#[cfg(not(loom))]
mod unit;
