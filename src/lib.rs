#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
// No unwrap in the library: errors are returned, never panicked on.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod config;
pub mod error;
#[cfg(feature = "outbox")]
pub mod outbox;
mod providers;
pub mod recent;
#[cfg(any(feature = "redis", feature = "fred"))]
mod record;
mod single_flight;
pub mod testing;
pub mod tier;
pub mod two_tier;
#[cfg(any(feature = "redis", feature = "fred"))]
mod url;

#[path = "../backends/mod.rs"]
pub mod backends;

pub use config::{FailurePolicy, KeyMode, RedisTokenConfig};
pub use error::{Error, Result};
#[cfg(feature = "outbox")]
pub use outbox::GuardedOutbox;
pub use providers::DefaultCache;
#[cfg(feature = "fred")]
pub use providers::FredTokenProvider;
#[cfg(feature = "redis")]
pub use providers::RedisTokenProvider;
pub use tier::{Claim, FromUrl, LocalCache, Owner, RemoteStore, Seen, WithCapacity};
pub use two_tier::{Once, Stats, TwoTier};
