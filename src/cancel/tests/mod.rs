//! In-crate tests of the cancellation tree: exact structure after each call
//! (unit) and the concurrent cases under loom.

#[cfg(loom)]
mod loom_cancel;
#[cfg(not(loom))]
mod unit;
