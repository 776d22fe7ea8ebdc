//! [`RedisStore`]: the L2 on redis-rs, through a `ConnectionManager` that
//! reconnects by itself.

use crate::config::RedisTokenConfig;
use crate::error::{Error, Result};
use crate::record::{self, COMMIT_LUA, RELEASE_LUA};
use crate::tier::{Claim, FromUrl, Owner, RemoteStore};
use crate::url::{check_scheme, redact_url};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script, ServerErrorKind};
use std::time::Duration;

/// A [`RemoteStore`] on a Redis server (7.0 or later) through redis-rs.
///
/// Calls are bounded by `TwoTier`'s `operation_timeout`; used on its own,
/// wrap calls in `tokio::time::timeout`.
///
/// Every command fails within `operation_timeout` (a timeout, or the store
/// unavailable), including while it reconnects.
///
/// One multiplexed connection, managed by redis-rs's `ConnectionManager`:
/// when the socket drops, the next command reconnects (with a short
/// exponential backoff) instead of failing forever. Each reservation is one
/// `SET key value NX PX ttl GET`; `release` and `commit` are Lua scripts
/// (EVALSHA, reloaded on NOSCRIPT) that compare the owner atomically.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> outbox_redis::Result<()> {
/// use outbox_redis::{RedisTokenConfig, TwoTier};
/// use outbox_redis::backends::{NoCache, RedisStore};
///
/// let config = RedisTokenConfig::default();
/// let store = RedisStore::connect("redis://127.0.0.1:6379", &config).await?;
/// let provider: TwoTier<NoCache, RedisStore> = TwoTier::with_store(store, config)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    release: Script,
    commit: Script,
    timeout: Duration,
    acks: Option<record::Acks>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// Maps a redis-rs error to the crate's error, by what the caller does next.
fn map_err(error: RedisError, timeout: Duration) -> Error {
    let code = error.code().unwrap_or_default();
    match error.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            Error::Auth {
                message: error.to_string(),
            }
        }
        _ if record::AUTH_CODES.contains(&code) => Error::Auth {
            message: error.to_string(),
        },
        _ if error.is_timeout() => Error::Timeout {
            operation: "redis command",
            after: timeout,
        },
        _ if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || record::OUTAGE_CODES.contains(&code) =>
        {
            Error::unavailable(error)
        }
        _ => Error::store(error),
    }
}

/// Runs a connection step within `connect`, mapping both ways it can fail.
async fn within<T>(
    connect: Duration,
    step: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    tokio::time::timeout(connect, step)
        .await
        .map_err(|_| Error::Timeout {
            operation: "connect",
            after: connect,
        })?
        .map_err(|error| map_err(error, connect))
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` with the `tls-rustls` feature), using the timeouts of
    /// `config`. The first connection is made here, so a bad address or
    /// password fails now rather than on the first reservation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad `config`; [`Error::InvalidUrl`] when
    /// the URL does not parse or needs a feature that is off;
    /// [`Error::Auth`] for a wrong user or password; [`Error::Unavailable`]
    /// when nothing answers; [`Error::Timeout`] after `connect_timeout`.
    pub async fn connect(url: &str, config: &RedisTokenConfig) -> Result<Self> {
        config.validate()?;
        check_scheme(url)?;
        let client = redis::Client::open(url).map_err(|error| Error::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        let connect = config.connect_timeout;
        let timeout = config.operation_timeout;
        // One direct connection first: it reports a refused connection or a
        // wrong password at once, where the manager would retry them.
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(connect));
        let first = within(
            connect,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await?;
        drop(first);
        // Every command is bounded by `operation_timeout` here, so `TwoTier`
        // needs no timer of its own around `reserve` (see `bounds_reserve`):
        // the response timeout bounds a sent command, and a reconnection is
        // one attempt bounded by the same time (the next call starts the next
        // attempt).
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = within(connect, ConnectionManager::new_with_config(client, manager)).await?;
        Ok(Self {
            acks: record::Acks::from_config(config),
            ..Self::from_connection(conn, timeout)
        })
    }

    /// A store over a connection manager you built yourself; `timeout` is
    /// reported in [`Error::Timeout`] when the manager's response timeout fires.
    #[must_use]
    pub fn from_connection(conn: ConnectionManager, timeout: Duration) -> Self {
        Self {
            conn,
            release: Script::new(RELEASE_LUA),
            commit: Script::new(COMMIT_LUA),
            timeout,
            acks: None,
        }
    }

    fn err(&self, error: RedisError) -> Error {
        map_err(error, self.timeout)
    }

    async fn pttl(&self, key: &str) -> Result<Claim> {
        let mut conn = self.conn.clone();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(record::legacy_claim(pttl))
    }
}

fn set_nx_get(key: &str, value: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(record::millis(ttl))
        .arg("GET");
    cmd
}

#[async_trait]
impl RemoteStore for RedisStore {
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim> {
        let started = std::time::Instant::now();
        let mut conn = self.conn.clone();
        let value = record::encode(owner, ttl);
        let Some(acks) = self.acks else {
            let previous: Option<Vec<u8>> = set_nx_get(key, &value, ttl)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            return record::settle(previous.as_deref(), owner, started, self.timeout, || {
                self.pttl(key)
            })
            .await;
        };
        // The claim and WAIT in one round trip, on the same connection.
        let mut pipe = redis::pipe();
        pipe.add_command(set_nx_get(key, &value, ttl))
            .cmd("WAIT")
            .arg(acks.replicas)
            .arg(acks.timeout_ms);
        let (previous, acked): (Option<Vec<u8>>, i64) =
            pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
        let claim = record::settle(previous.as_deref(), owner, started, self.timeout, || {
            self.pttl(key)
        })
        .await?;
        if claim.is_reserved()
            && let Err(error) = acks.check(acked)
        {
            // Fail closed: a claim that a failover could lose does not count.
            self.release(key, owner).await?;
            return Err(error);
        }
        Ok(claim)
    }

    fn bounds_reserve(&self) -> Option<Duration> {
        // With replica acknowledgements a failed claim is released by a
        // second command: `TwoTier` then bounds the whole call itself.
        self.acks.is_none().then_some(self.timeout)
    }

    async fn release(&self, key: &str, owner: Owner) -> Result<bool> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .release
            .key(key)
            .arg(record::owner_prefix(owner))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(deleted == 1)
    }

    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let committed: i64 = self
            .commit
            .key(key)
            .arg(record::owner_prefix(owner))
            .arg(record::encode(owner, ttl))
            .arg(record::millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if committed == 1
            && let Some(acks) = self.acks
        {
            let acked: i64 = redis::cmd("WAIT")
                .arg(acks.replicas)
                .arg(acks.timeout_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            acks.check(acked)?;
        }
        Ok(committed == 1)
    }

    async fn reserve_many(
        &self,
        keys: &[String],
        owner: Owner,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let value = record::encode(owner, ttl);
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(set_nx_get(key, &value, ttl));
        }
        let previous: Vec<Option<Vec<u8>>> =
            pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
        let claims = record::settle_many(keys, &previous, owner, |key| self.pttl(key)).await?;
        if let Some(acks) = self.acks {
            let acked: i64 = redis::cmd("WAIT")
                .arg(acks.replicas)
                .arg(acks.timeout_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            if let Err(error) = acks.check(acked) {
                for (key, claim) in keys.iter().zip(&claims) {
                    if claim.is_reserved() {
                        self.release(key, owner).await?;
                    }
                }
                return Err(error);
            }
        }
        Ok(claims)
    }
}

#[async_trait]
impl FromUrl for RedisStore {
    async fn from_url(url: &str, config: &RedisTokenConfig) -> Result<Self> {
        Self::connect(url, config).await
    }
}
