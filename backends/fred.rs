//! [`FredStore`]: the L2 on the fred client, with a reconnect policy and a
//! command timeout.

use crate::config::RedisTokenConfig;
use crate::error::{Error, Result};
use crate::record::{self, COMMIT_LUA, RELEASE_LUA};
use crate::tier::{Claim, FromUrl, Owner, RemoteStore};
use crate::url::{check_scheme, redact_url};
use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::prelude::{
    Builder, Client, ClientLike, Config, Error as FredError, ErrorKind, Expiration, KeysInterface,
    ReconnectPolicy, SetOptions,
};
use fred::types::CustomCommand;
use fred::types::scripts::Script;
use std::sync::Arc;
use std::time::Duration;

/// Stops the client's connection task when the last clone of the store goes,
/// so a dropped store does not keep reconnecting in the background.
struct Task(fred::types::ConnectHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`RemoteStore`] on a Redis server (7.0 or later) through fred.
///
/// fred has no command timeout by default; this store sets the config's
/// [`call_timeout`](crate::RedisTokenConfig::call_timeout) as fred's default command timeout and reconnects with
/// an exponential backoff (10 ms to 500 ms, forever) when the connection
/// drops. The commands are the same as [`RedisStore`](crate::backends::RedisStore)'s,
/// so the two backends can share one Redis.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> outbox_redis::Result<()> {
/// use outbox_redis::{FredTokenProvider, RedisTokenConfig};
///
/// let provider = FredTokenProvider::new("redis://127.0.0.1:6379", RedisTokenConfig::default()).await?;
/// assert!(provider.try_reserve("order-1").await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FredStore {
    client: Client,
    release: Script,
    commit: Script,
    timeout: Duration,
    acks: Option<record::Acks>,
    _task: Arc<Task>,
}

impl std::fmt::Debug for FredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FredStore").finish_non_exhaustive()
    }
}

fn map_err(error: &FredError, timeout: Duration) -> Error {
    let details = error.details();
    match error.kind() {
        ErrorKind::Auth => Error::Auth {
            message: error.to_string(),
        },
        _ if record::AUTH_CODES
            .iter()
            .any(|code| details.starts_with(code)) =>
        {
            Error::Auth {
                message: error.to_string(),
            }
        }
        ErrorKind::Timeout => Error::Timeout {
            operation: "redis command",
            after: timeout,
        },
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Backpressure => {
            Error::unavailable(error.to_string())
        }
        _ if record::OUTAGE_CODES
            .iter()
            .any(|code| details.starts_with(code)) =>
        {
            Error::unavailable(error.to_string())
        }
        _ => Error::store(error.to_string()),
    }
}

/// fred's configuration for `url`. A cluster URL of this crate's form,
/// `redis-cluster://[user:password@]h1:p1,h2:p2`, becomes fred's
/// `redis-cluster://[user:password@]h1:p1?node=h2:p2`.
fn fred_config(url: &str) -> std::result::Result<Config, FredError> {
    #[cfg(feature = "cluster")]
    if let Ok(Some(cluster)) = crate::url::cluster_url(url) {
        let userinfo = match (&cluster.username, &cluster.password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                user.as_deref().unwrap_or_default(),
                password.as_deref().unwrap_or_default()
            ),
        };
        let mut nodes = cluster.nodes.iter();
        let first = nodes.next().map_or("", String::as_str);
        let rest: Vec<String> = nodes.map(|node| format!("node={node}")).collect();
        let query = if rest.is_empty() {
            String::new()
        } else {
            format!("?{}", rest.join("&"))
        };
        return Config::from_url_clustered(&format!("redis-cluster://{userinfo}{first}{query}"));
    }
    Config::from_url(url)
}

/// `WAIT` routed to the node that holds `key` (any node outside a cluster).
fn wait_command(key: &str) -> CustomCommand {
    #[cfg(feature = "cluster")]
    let hash = fred::types::ClusterHash::Custom(record::slot(key));
    #[cfg(not(feature = "cluster"))]
    let hash = {
        let _ = key;
        fred::types::ClusterHash::Random
    };
    CustomCommand::new_static("WAIT", hash, false)
}

fn wait_args(acks: record::Acks) -> Vec<i64> {
    vec![
        i64::from(acks.replicas),
        i64::try_from(acks.timeout_ms).unwrap_or(i64::MAX),
    ]
}

impl FredStore {
    /// Connects to the server at `url` (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` with the `tls-rustls` feature), using the timeouts of
    /// `config`. The first connection is made here.
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
        let invalid_url = |reason: String| Error::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let fred_config = fred_config(url).map_err(|e| invalid_url(e.details().to_owned()))?;
        let connect = config.connect_timeout;
        let timeout = config.call_timeout();
        let client = Builder::from_config(fred_config)
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = connect;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 10, 500, 2))
            .build()
            .map_err(|e| invalid_url(e.details().to_owned()))?;
        let task = match tokio::time::timeout(connect, client.init()).await {
            Ok(Ok(task)) => task,
            Ok(Err(error)) => return Err(map_err(&error, connect)),
            Err(_) => {
                // Stop the half-started client before giving up on it.
                let _ = client.quit().await;
                return Err(Error::Timeout {
                    operation: "connect",
                    after: connect,
                });
            }
        };
        Ok(Self {
            client,
            release: Script::from_lua(RELEASE_LUA),
            commit: Script::from_lua(COMMIT_LUA),
            timeout,
            acks: record::Acks::from_config(config),
            _task: Arc::new(Task(task)),
        })
    }

    /// The fred client, for commands outside this crate's contract.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err(&self, error: &FredError) -> Error {
        map_err(error, self.timeout)
    }

    /// `WAIT` on the node of each of `keys` (once per node); `Ok` when
    /// enough replicas acknowledged everywhere.
    async fn wait(&self, acks: record::Acks, keys: &[&str]) -> Result<()> {
        for key in self.one_key_per_node(keys) {
            let acked: i64 = self
                .client
                .custom(wait_command(key), wait_args(acks))
                .await
                .map_err(|e| self.err(&e))?;
            acks.check(acked)?;
        }
        Ok(())
    }

    #[cfg(feature = "cluster")]
    fn one_key_per_node<'k>(&self, keys: &[&'k str]) -> Vec<&'k str> {
        use fred::interfaces::ClusterInterface;
        let routing = self.client.cached_cluster_state();
        let mut nodes = std::collections::HashSet::new();
        keys.iter()
            .copied()
            .filter(|key| {
                let node = routing
                    .as_ref()
                    .and_then(|routing| routing.get_server(record::slot(key)))
                    .map(ToString::to_string);
                nodes.insert(node)
            })
            .collect()
    }

    #[cfg(not(feature = "cluster"))]
    #[allow(clippy::unused_self)]
    fn one_key_per_node<'k>(&self, keys: &[&'k str]) -> Vec<&'k str> {
        keys.first().copied().into_iter().collect()
    }

    async fn pttl(&self, key: &str) -> Result<Claim> {
        let pttl: i64 = self.client.pttl(key).await.map_err(|e| self.err(&e))?;
        Ok(record::legacy_claim(pttl))
    }
}

fn px(ttl: Duration) -> Expiration {
    Expiration::PX(i64::try_from(record::millis(ttl)).unwrap_or(i64::MAX))
}

#[async_trait]
impl RemoteStore for FredStore {
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim> {
        let started = std::time::Instant::now();
        let value = record::encode(owner, ttl);
        let Some(acks) = self.acks else {
            let previous: Option<Bytes> = self
                .client
                .set(key, value, Some(px(ttl)), Some(SetOptions::NX), true)
                .await
                .map_err(|e| self.err(&e))?;
            return record::settle(previous.as_deref(), owner, started, self.timeout, || {
                self.pttl(key)
            })
            .await;
        };
        // The claim and WAIT in one round trip, on the same connection.
        let pipeline = self.client.pipeline();
        let () = pipeline
            .set(key, value, Some(px(ttl)), Some(SetOptions::NX), true)
            .await
            .map_err(|e| self.err(&e))?;
        let () = pipeline
            .custom(wait_command(key), wait_args(acks))
            .await
            .map_err(|e| self.err(&e))?;
        let (previous, acked): (Option<Bytes>, i64) =
            pipeline.all().await.map_err(|e| self.err(&e))?;
        let claim = record::settle(previous.as_deref(), owner, started, self.timeout, || {
            self.pttl(key)
        })
        .await?;
        record::release_unreplicated(acks.check(acked), &[key], &[claim], |key| {
            self.release(key, owner)
        })
        .await?;
        Ok(claim)
    }

    fn bounds_reserve(&self) -> Option<Duration> {
        // fred's command timeout covers a command's whole life, the wait for
        // a reconnection included. With replica acknowledgements a failed
        // claim is released by a second command: `TwoTier` bounds it then.
        self.acks.is_none().then_some(self.timeout)
    }

    async fn release(&self, key: &str, owner: Owner) -> Result<bool> {
        let deleted: i64 = self
            .release
            .evalsha_with_reload(&self.client, key, vec![record::owner_prefix(owner)])
            .await
            .map_err(|e| self.err(&e))?;
        Ok(deleted == 1)
    }

    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool> {
        let args = vec![
            record::owner_prefix(owner),
            record::encode(owner, ttl),
            record::millis(ttl).to_string(),
        ];
        let committed: i64 = self
            .commit
            .evalsha_with_reload(&self.client, key, args)
            .await
            .map_err(|e| self.err(&e))?;
        if committed == 1
            && let Some(acks) = self.acks
        {
            self.wait(acks, &[key]).await?;
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
        let value = record::encode(owner, ttl);
        let pipeline = self.client.pipeline();
        for key in keys {
            // Queued, not sent: the reply comes from `all` below.
            let () = pipeline
                .set(
                    key.as_str(),
                    value.as_str(),
                    Some(px(ttl)),
                    Some(SetOptions::NX),
                    true,
                )
                .await
                .map_err(|e| self.err(&e))?;
        }
        let previous: Vec<Option<Bytes>> = pipeline.all().await.map_err(|e| self.err(&e))?;
        let claims = record::settle_many(keys, &previous, owner, |key| self.pttl(key)).await?;
        if let Some(acks) = self.acks {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let replicated = self.wait(acks, &keys).await;
            record::release_unreplicated(replicated, &keys, &claims, |key| {
                self.release(key, owner)
            })
            .await?;
        }
        Ok(claims)
    }
}

#[async_trait]
impl FromUrl for FredStore {
    async fn from_url(url: &str, config: &RedisTokenConfig) -> Result<Self> {
        Self::connect(url, config).await
    }
}
