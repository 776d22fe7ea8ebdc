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

#[cfg(feature = "cluster")]
mod slots;

/// A [`RemoteStore`] on a Redis server (7.0 or later) through redis-rs.
///
/// Every command fails within the config's
/// [`call_timeout`](crate::RedisTokenConfig::call_timeout) (a timeout, or the
/// store unavailable), including while it reconnects.
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
    conn: Conn,
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

/// A single server (through the reconnecting manager) or a Redis Cluster
/// with the slot map `reserve_many` routes by.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(
        redis::cluster_async::ClusterConnection,
        std::sync::Arc<slots::Slots>,
    ),
}

/// A cluster node (host, port), as `CLUSTER SLOTS` names it.
#[cfg(feature = "cluster")]
type Node = std::sync::Arc<(String, u16)>;
#[cfg(not(feature = "cluster"))]
type Node = std::convert::Infallible;

/// The indexes of some keys that one pipeline claims: on `node` when it is
/// known, else where redis-rs routes the pipeline (the single server, or the
/// node of the keys' one slot).
struct Group {
    node: Option<Node>,
    indexes: Vec<usize>,
}

impl Conn {
    /// The indexes of `keys` grouped so that each group can be one pipeline:
    /// all together on a single server; in a cluster by node where the slot
    /// map is known, and by slot for keys whose node is not.
    #[cfg_attr(not(feature = "cluster"), allow(clippy::unused_async))]
    async fn groups(&self, keys: &[String]) -> Vec<Group> {
        match self {
            Self::Single(_) => vec![Group {
                node: None,
                indexes: (0..keys.len()).collect(),
            }],
            #[cfg(feature = "cluster")]
            Self::Cluster(conn, slots) => {
                let mut conn = conn.clone();
                let (by_node, unknown) = slots.by_node(&mut conn, keys).await;
                let mut groups: Vec<Group> = by_node
                    .into_iter()
                    .map(|(node, indexes)| Group {
                        node: Some(node),
                        indexes,
                    })
                    .collect();
                groups.extend(by_slot(keys, unknown));
                groups
            }
        }
    }

    /// Forgets the slot map after a node answered a pipeline with an error
    /// (a slot moved, a node left): the next `groups` asks the cluster again.
    #[cfg_attr(not(feature = "cluster"), allow(clippy::unused_self))]
    fn forget_slots(&self) {
        #[cfg(feature = "cluster")]
        if let Self::Cluster(_, slots) = self {
            slots.forget();
        }
    }
}

/// `indexes` of `keys` grouped by cluster slot: redis-rs routes a pipeline
/// whose keys share one slot by itself, following MOVED and ASK.
fn by_slot(keys: &[String], indexes: Vec<usize>) -> Vec<Group> {
    #[cfg(feature = "cluster")]
    {
        let mut slots: std::collections::BTreeMap<u16, Vec<usize>> =
            std::collections::BTreeMap::new();
        for i in indexes {
            slots.entry(record::slot(&keys[i])).or_default().push(i);
        }
        slots
            .into_values()
            .map(|indexes| Group {
                node: None,
                indexes,
            })
            .collect()
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = keys;
        vec![Group {
            node: None,
            indexes,
        }]
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn, _) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn, _) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(conn, _) => conn.get_db(),
        }
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
        #[cfg(feature = "cluster")]
        if let Some(cluster) = crate::url::cluster_url(url)? {
            return Self::connect_cluster(url, &cluster, config).await;
        }
        let client = redis::Client::open(url).map_err(|error| Error::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        let connect = config.connect_timeout;
        let timeout = config.call_timeout();
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
        // Every command is bounded by `call_timeout()` here, so `TwoTier`
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

    #[cfg(feature = "cluster")]
    async fn connect_cluster(
        url: &str,
        cluster: &crate::url::ClusterUrl,
        config: &RedisTokenConfig,
    ) -> Result<Self> {
        let timeout = config.call_timeout();
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("redis://{node}"))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(config.connect_timeout)
            .response_timeout(timeout)
            .retries(1);
        if let Some(user) = &cluster.username {
            builder = builder.username(user);
        }
        if let Some(password) = &cluster.password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(|error| Error::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        let conn = within(config.connect_timeout, client.get_async_connection()).await?;
        Ok(Self {
            conn: Conn::Cluster(conn, std::sync::Arc::default()),
            release: Script::new(RELEASE_LUA),
            commit: Script::new(COMMIT_LUA),
            timeout,
            acks: record::Acks::from_config(config),
        })
    }

    /// `SET … NX PX … GET` for each key in one pipeline (plus `WAIT` when
    /// replicas must acknowledge): the previous values, and how many replicas
    /// acknowledged. In a cluster the pipeline goes to `node`, or, without
    /// one, all keys must share a slot.
    async fn claim_batch(
        &self,
        keys: &[&str],
        value: &str,
        ttl: Duration,
        node: Option<&Node>,
    ) -> Result<(Vec<Option<Vec<u8>>>, Option<i64>)> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(set_nx_get(key, value, ttl));
        }
        if let Some(acks) = self.acks {
            pipe.cmd("WAIT").arg(acks.replicas).arg(acks.timeout_ms);
        }
        let replies: redis::RedisResult<Vec<redis::Value>> = match (node, &mut conn) {
            #[cfg(feature = "cluster")]
            (Some(node), Conn::Cluster(cluster, _)) => {
                let count = pipe.len();
                let route = redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                    host: node.0.clone(),
                    port: node.1,
                };
                cluster.route_pipeline(pipe, 0, count, route).await
            }
            _ => pipe.query_async(&mut conn).await,
        };
        let mut replies = replies.map_err(|e| self.err(e))?;
        let acked = if self.acks.is_some() {
            let wait = replies
                .pop()
                .ok_or_else(|| Error::store("the pipeline lost WAIT's reply"))?;
            Some(redis::from_redis_value::<i64>(wait).map_err(|e| self.err(e.into()))?)
        } else {
            None
        };
        let previous = replies
            .into_iter()
            .map(|reply| {
                redis::from_redis_value::<Option<Vec<u8>>>(reply).map_err(|e| self.err(e.into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((previous, acked))
    }

    /// A store over a connection manager you built yourself; `timeout` is
    /// reported in [`Error::Timeout`] when the manager's response timeout fires.
    #[must_use]
    pub fn from_connection(conn: ConnectionManager, timeout: Duration) -> Self {
        Self {
            conn: Conn::Single(conn),
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
        // The claim and WAIT in one round trip, on the key's connection.
        let (previous, acked) = self.claim_batch(&[key], &value, ttl, None).await?;
        let previous = previous.into_iter().next().flatten();
        let acked = acked.unwrap_or(0);
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
            // `PTTL key` first routes the pipeline, and so WAIT, to the
            // key's node in a cluster.
            let (_, acked): (i64, i64) = redis::pipe()
                .cmd("PTTL")
                .arg(key)
                .cmd("WAIT")
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
        let value = record::encode(owner, ttl);
        let mut previous: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut acked: Option<i64> = None;
        // One pipeline; in a cluster one per node, all in flight at once. A
        // node's pipeline that fails (a slot moved) is claimed again by slot,
        // which redis-rs routes itself: the same owner makes keys that the
        // failed pipeline did claim answer `Reserved` again.
        let mut groups = self.conn.groups(keys).await;
        for _pass in 0..2 {
            let answers = futures_util::future::join_all(groups.iter().map(|group| {
                let batch: Vec<&str> = group.indexes.iter().map(|&i| keys[i].as_str()).collect();
                let value = value.as_str();
                async move {
                    self.claim_batch(&batch, value, ttl, group.node.as_ref())
                        .await
                }
            }))
            .await;
            let mut again = Vec::new();
            for (group, answer) in groups.into_iter().zip(answers) {
                match answer {
                    Ok((values, group_acked)) => {
                        for (&i, value) in group.indexes.iter().zip(values) {
                            previous[i] = value;
                        }
                        acked = match (acked, group_acked) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    Err(error) if group.node.is_none() => return Err(error),
                    Err(_) => {
                        self.conn.forget_slots();
                        again.extend(group.indexes);
                    }
                }
            }
            groups = by_slot(keys, again);
            if groups.is_empty() {
                break;
            }
        }
        let claims = record::settle_many(keys, &previous, owner, |key| self.pttl(key)).await?;
        if let (Some(acks), Some(acked)) = (self.acks, acked) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            record::release_unreplicated(acks.check(acked), &keys, &claims, |key| {
                self.release(key, owner)
            })
            .await?;
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
