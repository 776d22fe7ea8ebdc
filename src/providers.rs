//! The ready-made providers: `TwoTier` over a Redis backend with the default
//! L1, built from a URL as the README shows.

use crate::tier::{FromUrl, LocalCache, WithCapacity};
use crate::{RedisTokenConfig, Result, TwoTier};

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

impl<L1: LocalCache + WithCapacity, L2: FromUrl> TwoTier<L1, L2> {
    /// Connects to the store at `url` and builds the provider, its L1 sized
    /// by `config.local_cache_capacity`: `RedisTokenProvider::new(url, config)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a bad
    /// `config`, and whatever the store's `from_url` reports (see
    /// [`RedisStore::connect`](crate::backends::RedisStore::connect)).
    pub async fn new(url: &str, config: RedisTokenConfig) -> Result<Self> {
        config.validate()?;
        let store = L2::from_url(url, &config).await?;
        Self::with_store(store, config)
    }
}
