//! The backends: each file implements one contract of [`tier`](crate::tier)
//! and knows nothing of the others or of [`TwoTier`](crate::TwoTier).
//!
//! | type | tier | feature |
//! |---|---|---|
//! | [`NoCache`] | L1 | always |
//! | `MokaCache` | L1 | `moka` |
//! | `MiniMokaCache` | L1 | `mini-moka` |
//! | [`MemoryStore`] | L2 | always |
//! | `RedisStore` | L2 | `redis` (default) |
//! | `FredStore` | L2 | `fred` |

#[cfg(feature = "fred")]
pub mod fred;
pub mod memory;
#[cfg(feature = "mini-moka")]
pub mod mini_moka;
#[cfg(feature = "moka")]
pub mod moka;
pub mod no_cache;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "fred")]
pub use fred::FredStore;
pub use memory::MemoryStore;
#[cfg(feature = "mini-moka")]
pub use mini_moka::{MiniMokaCache, MiniMokaMain};
#[cfg(feature = "moka")]
pub use moka::{MokaCache, MokaMain};
pub use no_cache::NoCache;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
