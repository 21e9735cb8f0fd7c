//! Ready-made processors: map, filter, flat_map, batch, rate limit, and the
//! factory wrapper for stages that are not `Clone`.

mod batch;
mod factory;
mod map;
mod rate_limit;

pub use batch::{batch, Batch};
pub use factory::{factory, Factory};
pub use map::{filter, flat_map, map, map_ref, Filter, FlatMap, Map, MapRef};
pub use rate_limit::{rate_limit, RateLimit};
