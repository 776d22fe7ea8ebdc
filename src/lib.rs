#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod config;
pub mod error;
pub mod testing;
pub mod tier;
pub mod two_tier;

#[path = "../backends/mod.rs"]
pub mod backends;

pub use config::{FailurePolicy, RedisTokenConfig};
pub use error::{Error, Result};
pub use tier::{Claim, LocalCache, Owner, RemoteStore, Seen, WithCapacity};
pub use two_tier::{Once, Stats, TwoTier};
