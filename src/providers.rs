//! The ready-made providers: `TwoTier` over a Redis backend with the default
//! L1, built from a URL as the README shows.

#[cfg(any(feature = "redis", feature = "fred"))]
use crate::{RedisTokenConfig, Result, TwoTier, tier::LocalCache, tier::WithCapacity};

/// The L1 the ready-made providers use: [`MokaCache`](crate::backends::MokaCache)
/// when the `moka` feature is on.
#[cfg(feature = "moka")]
pub type DefaultCache = crate::backends::MokaCache;

/// The L1 the ready-made providers use: [`NoCache`](crate::backends::NoCache)
/// because the `moka` feature is off.
#[cfg(not(feature = "moka"))]
pub type DefaultCache = crate::backends::NoCache;

/// The provider of the README: Redis through redis-rs, with a moka L1 when the
/// `moka` feature is on (else none).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> outbox_redis::Result<()> {
/// use outbox_redis::{RedisTokenProvider, config::RedisTokenConfig};
/// use std::time::Duration;
///
/// let provider = RedisTokenProvider::new(
///     "redis://127.0.0.1:6379",
///     RedisTokenConfig { ttl: Duration::from_secs(3600), ..Default::default() },
/// )
/// .await?;
/// assert!(provider.try_reserve("unique_token_123").await?);
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub type RedisTokenProvider = TwoTier<DefaultCache, crate::backends::RedisStore>;

/// Like [`RedisTokenProvider`], on the fred client.
#[cfg(feature = "fred")]
pub type FredTokenProvider = TwoTier<DefaultCache, crate::backends::FredStore>;

#[cfg(feature = "redis")]
impl<L1: LocalCache + WithCapacity> TwoTier<L1, crate::backends::RedisStore> {
    /// Connects to Redis at `url` through redis-rs and builds the provider.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect`](crate::backends::RedisStore::connect).
    pub async fn new(url: &str, config: RedisTokenConfig) -> Result<Self> {
        let store = crate::backends::RedisStore::connect(url, &config).await?;
        Self::with_store(store, config)
    }
}

#[cfg(feature = "fred")]
impl<L1: LocalCache + WithCapacity> TwoTier<L1, crate::backends::FredStore> {
    /// Connects to Redis at `url` through fred and builds the provider.
    ///
    /// # Errors
    ///
    /// As [`FredStore::connect`](crate::backends::FredStore::connect).
    pub async fn new(url: &str, config: RedisTokenConfig) -> Result<Self> {
        let store = crate::backends::FredStore::connect(url, &config).await?;
        Self::with_store(store, config)
    }
}
