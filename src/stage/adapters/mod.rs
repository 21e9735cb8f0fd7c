//! Ready-made processors: map, then (async map), filter, flat_map, batch,
//! rate limit, and the factory wrapper for stages that are not `Clone`.

mod batch;
mod factory;
mod map;
mod rate_limit;
mod then;

pub use batch::{batch, Batch};
pub use factory::{factory, Factory};
pub use map::{
    filter, flat_map, map, map_ref, try_map, ByValue, Filter, FlatMap, Map, MapRef, TryMap,
};
pub use rate_limit::{rate_limit, RateLimit};
pub use then::{then, try_then, Then, TryThen};
