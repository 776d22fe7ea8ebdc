//! The workloads of the README's Performance table, each measured side by
//! side with the raw redis-rs client (and fred's, and outbox-redis 0.1.5) in
//! the same run, against a `redis-server` this bench starts on a free
//! loopback port. Prints ratios, not absolute numbers: client and server share
//! the machine's cores, so ratios are what carries from run to run.
//!
//! ```sh
//! cargo bench --bench workloads            # everything, about 2 minutes
//! cargo bench --bench workloads -- storm   # only the workloads whose name contains "storm"
//! ```

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "rates and per-operation figures computed from measured counts"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::RedisServer;
use outbox_core::{IdempotencyStorageProvider, IdempotencyToken};
use outbox_redis::backends::{FredStore, MokaCache, NoCache, RedisStore};
use outbox_redis::{LocalCache, RedisTokenConfig, RemoteStore, TwoTier};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(24 * 3600);
const ROUNDS: usize = 5;

/// One way to ask "is this token new?".
trait Target: Send + Sync + 'static {
    type Token: Send + Sync + 'static;
    fn token(&self, raw: String) -> Self::Token;
    fn hit(&self, token: &Self::Token) -> impl Future<Output = bool> + Send;
}

/// The raw redis-rs client: `SET i_token:<t> 1 NX PX ttl` on one multiplexed connection.
struct RawRedis(redis::aio::MultiplexedConnection);

impl Target for RawRedis {
    type Token = String;
    fn token(&self, raw: String) -> String {
        raw
    }
    async fn hit(&self, token: &String) -> bool {
        let mut conn = self.0.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("i_token:{token}"))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .expect("raw SET");
        set.is_some()
    }
}

/// The raw redis-rs client sending this crate's command:
/// `SET i_token:<t> <56-byte value> NX PX ttl GET`.
struct RawRedisGet(redis::aio::MultiplexedConnection);

impl Target for RawRedisGet {
    type Token = String;
    fn token(&self, raw: String) -> String {
        raw
    }
    async fn hit(&self, token: &String) -> bool {
        let mut conn = self.0.clone();
        let old: Option<Vec<u8>> = redis::cmd("SET")
            .arg(format!("i_token:{token}"))
            .arg("1:AAAAAAAACrwAAAAAAAAABQ:1764866000000")
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .arg("GET")
            .query_async(&mut conn)
            .await
            .expect("raw SET GET");
        old.is_none()
    }
}

/// The raw fred client, same command.
struct RawFred(fred::prelude::Client);

impl Target for RawFred {
    type Token = String;
    fn token(&self, raw: String) -> String {
        raw
    }
    async fn hit(&self, token: &String) -> bool {
        use fred::prelude::{Expiration, KeysInterface, SetOptions};
        let set: Option<String> = self
            .0
            .set(
                format!("i_token:{token}"),
                1,
                Some(Expiration::PX(TTL.as_millis() as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .expect("raw fred SET");
        set.is_some()
    }
}

struct Ours<L1: LocalCache, L2: RemoteStore>(TwoTier<L1, L2>);

impl<L1: LocalCache + 'static, L2: RemoteStore + 'static> Target for Ours<L1, L2> {
    type Token = String;
    fn token(&self, raw: String) -> String {
        raw
    }
    async fn hit(&self, token: &String) -> bool {
        self.0.try_reserve(token).await.expect("try_reserve")
    }
}

/// A store called directly, without `TwoTier`: the backend's own cost.
struct StoreOnly<S: RemoteStore>(S, outbox_redis::Owner);

impl<S: RemoteStore + 'static> Target for StoreOnly<S> {
    type Token = String;
    fn token(&self, raw: String) -> String {
        raw
    }
    async fn hit(&self, token: &String) -> bool {
        let key = format!("i_token:{token}");
        self.0
            .reserve(&key, self.1, TTL)
            .await
            .expect("reserve")
            .is_reserved()
    }
}

/// outbox-redis 0.1.5 with its moka L1 (`features = ["moka"]`).
struct Upstream(upstream::RedisProvider);

impl Target for Upstream {
    type Token = IdempotencyToken;
    fn token(&self, raw: String) -> IdempotencyToken {
        IdempotencyToken::new(raw)
    }
    async fn hit(&self, token: &IdempotencyToken) -> bool {
        self.0
            .try_reserve(token)
            .await
            .expect("upstream try_reserve")
    }
}

/// CPU time this process has used so far (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 Hz).
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

thread_local! {
    static LAST_CPU_NS_PER_OP: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
    static LAST_OPS: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
}

/// Runs every token through `tasks` tasks; returns (ops per second, accepted).
async fn drive<T: Target>(target: Arc<T>, tokens: Vec<String>, tasks: usize) -> (f64, usize) {
    let tokens: Arc<Vec<T::Token>> =
        Arc::new(tokens.into_iter().map(|t| target.token(t)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu = cpu_time();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (target, tokens, next) = (target.clone(), tokens.clone(), next.clone());
        set.spawn(async move {
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                if target.hit(token).await {
                    accepted += 1;
                }
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(joined) = set.join_next().await {
        accepted += joined.expect("task");
    }
    let per_op = cpu_time().saturating_sub(cpu).as_nanos() as f64 / tokens.len() as f64;
    LAST_CPU_NS_PER_OP.with(|c| c.set(per_op));
    LAST_OPS.with(|c| c.set(tokens.len()));
    (
        tokens.len() as f64 / started.elapsed().as_secs_f64(),
        accepted,
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct Bench {
    server: RedisServer,
    round: AtomicUsize,
}

impl Bench {
    fn fresh(&self, prefix: &str, n: usize) -> Vec<String> {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| format!("{prefix}-{round}-{i:08}")).collect()
    }

    fn flush(&self) {
        self.server.cli(&["FLUSHALL"]);
    }

    /// CPU time the server has used so far (user + system, from `INFO cpu`):
    /// less noisy than throughput on a shared machine.
    fn server_cpu(&self) -> Duration {
        let info = self.server.cli(&["INFO", "cpu"]);
        let seconds: f64 = info
            .lines()
            .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum();
        Duration::from_secs_f64(seconds)
    }

    /// Calls of commands that write a token (SET, EVALSHA, EVAL) so far.
    fn commands(&self) -> u64 {
        let stats = self.server.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter(|l| {
                [
                    "cmdstat_set:",
                    "cmdstat_evalsha:",
                    "cmdstat_eval:",
                    "cmdstat_pttl:",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    fn url(&self) -> String {
        self.server.url()
    }

    #[allow(
        clippy::unused_self,
        reason = "grouped with the other per-bench helpers"
    )]
    fn config(&self) -> RedisTokenConfig {
        RedisTokenConfig {
            ttl: TTL,
            operation_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    async fn raw_redis(&self) -> Arc<RawRedis> {
        let client = redis::Client::open(self.url()).expect("url");
        Arc::new(RawRedis(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("connect"),
        ))
    }

    async fn raw_redis_get(&self) -> Arc<RawRedisGet> {
        let client = redis::Client::open(self.url()).expect("url");
        Arc::new(RawRedisGet(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("connect"),
        ))
    }

    async fn raw_fred(&self) -> Arc<RawFred> {
        use fred::prelude::{ClientLike, Config};
        let client =
            fred::prelude::Builder::from_config(Config::from_url(&self.url()).expect("url"))
                .build()
                .expect("fred client");
        client.init().await.expect("connect");
        Arc::new(RawFred(client))
    }

    async fn ours_redis_moka(&self) -> Arc<Ours<MokaCache, RedisStore>> {
        Arc::new(Ours(
            TwoTier::new(&self.url(), self.config())
                .await
                .expect("connect"),
        ))
    }

    async fn ours_redis_none(&self) -> Arc<Ours<NoCache, RedisStore>> {
        Arc::new(Ours(
            TwoTier::new(&self.url(), self.config())
                .await
                .expect("connect"),
        ))
    }

    async fn ours_fred_moka(&self) -> Arc<Ours<MokaCache, FredStore>> {
        Arc::new(Ours(
            TwoTier::new(&self.url(), self.config())
                .await
                .expect("connect"),
        ))
    }

    async fn ours_fred_none(&self) -> Arc<Ours<NoCache, FredStore>> {
        Arc::new(Ours(
            TwoTier::new(&self.url(), self.config())
                .await
                .expect("connect"),
        ))
    }

    async fn upstream(&self) -> Arc<Upstream> {
        let config = upstream::config::RedisTokenConfig {
            ttl: TTL,
            ..Default::default()
        };
        Arc::new(Upstream(
            upstream::RedisProvider::new(&self.url(), config)
                .await
                .expect("connect"),
        ))
    }
}

macro_rules! rounds {
    ($bench:expr, $( $name:literal => $body:expr ),+ $(,)?) => {{
        let mut results: Vec<(&str, Vec<f64>, Vec<f64>, Vec<f64>)> =
            vec![$( ($name, Vec::new(), Vec::new(), Vec::new()) ),+];
        for _ in 0..ROUNDS {
            let mut i = 0;
            $(
                let server = $bench.server_cpu();
                let value: f64 = $body;
                let server = $bench.server_cpu().saturating_sub(server);
                results[i].1.push(value);
                results[i].2.push(LAST_CPU_NS_PER_OP.with(std::cell::Cell::get));
                results[i].3.push(server.as_nanos() as f64 / LAST_OPS.with(std::cell::Cell::get) as f64);
                i += 1;
                $bench.flush();
            )+
            let _ = i;
        }
        results
            .into_iter()
            .map(|(name, xs, cpu, server)| (name, median(xs), median(cpu), median(server)))
            .collect::<Vec<_>>()
    }};
}

/// Prints each result as a ratio to `baseline`, with the client process's
/// and the server's CPU time per operation.
fn report(title: &str, baseline: &str, results: &[(&str, f64, f64, f64)], unit: &str) {
    let base = results
        .iter()
        .find(|(n, ..)| *n == baseline)
        .map_or(1.0, |(_, v, ..)| *v);
    println!("\n{title}");
    for (name, value, cpu, server) in results {
        println!(
            "  {name:<34} {value:>12.0} {unit}   {:>6.2}x {baseline}   CPU/op client {cpu:>6.0} ns, server {server:>5.0} ns",
            value / base
        );
    }
}

async fn new_tokens(bench: &Bench, tasks: usize) {
    const N: usize = 200_000;
    let raw = bench.raw_redis().await;
    let raw_get = bench.raw_redis_get().await;
    let store_only = Arc::new(StoreOnly(
        RedisStore::connect(&bench.url(), &bench.config())
            .await
            .expect("connect"),
        outbox_redis::Owner::new(9, 9),
    ));
    let fred_raw = bench.raw_fred().await;
    let redis_moka = bench.ours_redis_moka().await;
    let redis_none = bench.ours_redis_none().await;
    let fred_moka = bench.ours_fred_moka().await;
    let fred_none = bench.ours_fred_none().await;
    let up = bench.upstream().await;
    let results = rounds!(bench,
        "raw redis-rs" => drive(raw.clone(), bench.fresh("raw", N), tasks).await.0,
        "raw redis-rs, SET NX PX GET" => drive(raw_get.clone(), bench.fresh("rawg", N), tasks).await.0,
        "RedisStore::reserve, no TwoTier" => drive(store_only.clone(), bench.fresh("so", N), tasks).await.0,
        "RedisTokenProvider (moka)" => drive(redis_moka.clone(), bench.fresh("rm", N), tasks).await.0,
        "TwoTier<NoCache, RedisStore>" => drive(redis_none.clone(), bench.fresh("rn", N), tasks).await.0,
        "raw fred" => drive(fred_raw.clone(), bench.fresh("rawf", N), tasks).await.0,
        "FredTokenProvider (moka)" => drive(fred_moka.clone(), bench.fresh("fm", N), tasks).await.0,
        "TwoTier<NoCache, FredStore>" => drive(fred_none.clone(), bench.fresh("fn", N), tasks).await.0,
        "outbox-redis 0.1.5 + moka" => drive(up.clone(), bench.fresh("up", N), tasks).await.0,
    );
    report(
        &format!("new tokens: {N} tokens, {tasks} tasks"),
        "raw redis-rs",
        &results,
        "tokens/s",
    );
    let fred_base = results
        .iter()
        .find(|(n, ..)| *n == "raw fred")
        .map_or(1.0, |(_, v, ..)| *v);
    for name in ["FredTokenProvider (moka)", "TwoTier<NoCache, FredStore>"] {
        if let Some((_, v, ..)) = results.iter().find(|(n, ..)| *n == name) {
            println!("  {name:<34} {:>6.2}x raw fred", v / fred_base);
        }
    }
}

async fn storm(bench: &Bench) {
    const TOKENS: usize = 1_000;
    const COPIES: usize = 100;
    // A storm is ~15 ms of work: many rounds, so the median is steady.
    const STORM_ROUNDS: usize = 21;
    let storm_tokens = |prefix: &str| {
        let base = bench.fresh(prefix, TOKENS);
        let mut all: Vec<String> = base
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.clone(), COPIES))
            .collect();
        common::shuffle(&mut all, 99);
        all
    };
    let names = [
        "RedisTokenProvider (moka)",
        "FredTokenProvider (moka)",
        "outbox-redis 0.1.5 + moka",
    ];
    // per provider: Redis commands, accepted, requests/s, one per round
    let mut seen: Vec<(Vec<u64>, Vec<usize>, Vec<f64>)> = vec![Default::default(); 3];
    for _ in 0..STORM_ROUNDS {
        for (which, row) in seen.iter_mut().enumerate() {
            let before = bench.commands();
            let tokens = storm_tokens("storm");
            let (rate, accepted) = match which {
                0 => drive(bench.ours_redis_moka().await, tokens, 256).await,
                1 => drive(bench.ours_fred_moka().await, tokens, 256).await,
                _ => drive(bench.upstream().await, tokens, 256).await,
            };
            row.0.push(bench.commands() - before);
            row.1.push(accepted);
            row.2.push(rate);
            bench.flush();
        }
    }
    println!(
        "\nretry storm: {TOKENS} tokens x {COPIES} concurrent requests, 256 tasks, one provider (median of {STORM_ROUNDS} rounds; min-max)"
    );
    let range = |xs: &[u64]| {
        (
            xs.iter().min().copied().unwrap_or(0),
            xs.iter().max().copied().unwrap_or(0),
        )
    };
    let mut rates = Vec::new();
    for (name, (commands, accepted, rate)) in names.iter().zip(seen) {
        let (c_lo, c_hi) = range(&commands);
        let accepted: Vec<u64> = accepted.iter().map(|&a| a as u64).collect();
        let (a_lo, a_hi) = range(&accepted);
        let rate = median(rate);
        rates.push(rate);
        println!(
            "  {name:<30} {c_lo:>5}-{c_hi:<5} Redis commands, {a_lo}-{a_hi} accepted, {rate:>10.0} requests/s"
        );
    }
    println!(
        "  RedisTokenProvider / 0.1.5 throughput: {:.2}x; FredTokenProvider / 0.1.5: {:.2}x",
        rates[0] / rates[2],
        rates[1] / rates[2]
    );
}

async fn taken_elsewhere(bench: &Bench) {
    const N: usize = 200_000;
    let raw = bench.raw_redis().await;
    let other = bench.ours_redis_moka().await;
    let ours = bench.ours_redis_moka().await;
    let fred = bench.ours_fred_moka().await;
    let up = bench.upstream().await;
    let hot = |prefix: &str| {
        let token = bench.fresh(prefix, 1).remove(0);
        (token.clone(), vec![token; N])
    };
    let results = rounds!(bench,
        "raw redis-rs" => { let (t, all) = hot("te-raw"); raw.hit(&t).await; drive(raw.clone(), all, 64).await.0 },
        "RedisTokenProvider (moka)" => { let (t, all) = hot("te-o"); other.hit(&t).await; drive(ours.clone(), all, 64).await.0 },
        "FredTokenProvider (moka)" => { let (t, all) = hot("te-f"); other.hit(&t).await; drive(fred.clone(), all, 64).await.0 },
        "outbox-redis 0.1.5 + moka" => { let (t, all) = hot("te-u"); other.hit(&t).await; drive(up.clone(), all, 64).await.0 },
    );
    report(
        &format!("a token another instance reserved: {N} calls, 64 tasks"),
        "raw redis-rs",
        &results,
        "calls/s",
    );
}

async fn own_hot_token(bench: &Bench) {
    const N: usize = 1_000_000;
    let ours = bench.ours_redis_moka().await;
    let up = bench.upstream().await;
    let raw = bench.raw_redis().await;
    let hot = |prefix: &str| {
        let token = bench.fresh(prefix, 1).remove(0);
        (token.clone(), vec![token; N])
    };
    let results = rounds!(bench,
        "outbox-redis 0.1.5 + moka" => { let (t, all) = hot("oh-u"); up.hit(&up.token(t)).await; drive(up.clone(), all, 64).await.0 },
        "RedisTokenProvider (moka)" => { let (t, all) = hot("oh-o"); ours.hit(&t).await; drive(ours.clone(), all, 64).await.0 },
        "raw redis-rs" => { let (t, all) = hot("oh-r"); raw.hit(&t).await; drive(raw.clone(), all[..N / 10].to_vec(), 64).await.0 },
    );
    report(
        &format!("a token this instance reserved: {N} calls, 64 tasks"),
        "outbox-redis 0.1.5 + moka",
        &results,
        "rejections/s",
    );
}

/// Tokens per second when `callers` tasks share `batches`, each task calling
/// `call` on the next batch until none is left.
async fn batches_per_s<F, Fut>(batches: Vec<Vec<String>>, callers: usize, call: F) -> f64
where
    F: Fn(Vec<String>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let tokens: usize = batches.iter().map(Vec::len).sum();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (queue, call) = (queue.clone(), call.clone());
        set.spawn(async move {
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some(batch) = next else { break };
                call(batch).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    tokens as f64 / started.elapsed().as_secs_f64()
}

/// `redis-benchmark -P 16 -t set` against the bench's server: SET/s.
fn redis_benchmark(bench: &Bench) -> f64 {
    let output = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &bench.server.port().to_string(),
            "-P",
            "16",
            "-t",
            "set",
            "-n",
            "300000",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    bench.flush();
    let text = String::from_utf8_lossy(&output.stdout);
    // Progress lines end in \r; the result reads "SET: <n> requests per second".
    text.split(['\r', '\n'])
        .filter(|line| line.contains("requests per second"))
        .filter_map(|line| {
            line.split("SET:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or(f64::NAN)
}

/// Prints the `reserve_many` rows (name, tokens/s, server CPU ns per token)
/// as medians, with ratios to redis-benchmark and to sequential calls.
fn report_batch(batch: usize, rows: Vec<(String, Vec<f64>, Vec<f64>)>) {
    let rows: Vec<(String, f64, f64)> = rows
        .into_iter()
        .map(|(n, v, s)| (n, median(v), median(s)))
        .collect();
    let value = |name: &str| {
        rows.iter()
            .find(|(n, ..)| n == name)
            .map_or(f64::NAN, |r| r.1)
    };
    let reference = value("redis-benchmark -P 16 -t set");
    let sequential = value("sequential try_reserve");
    println!(
        "\nreserve_many: batches of {batch} new tokens (tokens/s; x redis-benchmark; x sequential; server CPU per token)"
    );
    for (name, v, server) in &rows {
        println!(
            "  {name:<36} {v:>12.0}   {:>5.2}x   {:>6.1}x   {server:>5.0} ns",
            v / reference,
            v / sequential
        );
    }
}

async fn batch(bench: &Bench) {
    const BATCH: usize = 1_000;
    const BATCHES: usize = 48;
    let ours = bench.ours_redis_moka().await;
    let raw = bench.raw_redis().await;
    let reserve_many = move |tokens: Vec<String>| {
        let ours = ours.clone();
        async move {
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let answers = ours.0.try_reserve_many(&refs).await.expect("reserve_many");
            assert!(answers.iter().all(|&a| a));
        }
    };
    let pipeline = move |tokens: Vec<String>| {
        let mut conn = raw.0.clone();
        async move {
            let mut pipe = redis::pipe();
            for token in &tokens {
                pipe.cmd("SET")
                    .arg(format!("i_token:{token}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(3_600_000);
            }
            let set: Vec<Option<String>> = pipe.query_async(&mut conn).await.expect("pipeline");
            assert!(set.iter().all(Option::is_some));
        }
    };
    let ours_one = bench.ours_redis_moka().await;
    // name, tokens/s, server CPU ns per token
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut record = |name: String, (value, server): (f64, f64)| match rows
        .iter_mut()
        .find(|(n, ..)| *n == name)
    {
        Some((_, values, servers)) => {
            values.push(value);
            servers.push(server);
        }
        None => rows.push((name, vec![value], vec![server])),
    };
    let tokens = (BATCH * BATCHES) as f64;
    let timed = async |run: std::pin::Pin<Box<dyn Future<Output = f64> + '_>>| {
        let server = bench.server_cpu();
        let value = run.await;
        let server = bench.server_cpu().saturating_sub(server).as_nanos() as f64 / tokens;
        bench.flush();
        (value, server)
    };
    // Tokens are made before each clock starts, for every side.
    let fresh = |prefix: &str| -> Vec<Vec<String>> {
        (0..BATCHES).map(|_| bench.fresh(prefix, BATCH)).collect()
    };
    for _ in 0..ROUNDS {
        for callers in [1, 4] {
            let run = batches_per_s(fresh("batch"), callers, reserve_many.clone());
            record(
                format!("try_reserve_many, {callers} caller(s)"),
                timed(Box::pin(run)).await,
            );
            let run = batches_per_s(fresh("pipe"), callers, pipeline.clone());
            record(
                format!("raw redis-rs pipeline, {callers} caller(s)"),
                timed(Box::pin(run)).await,
            );
        }
        let tokens = bench.fresh("seq", 5 * BATCH);
        let run = async {
            let started = Instant::now();
            for token in tokens {
                assert!(ours_one.hit(&token).await);
            }
            (5 * BATCH) as f64 / started.elapsed().as_secs_f64()
        };
        let (value, _) = timed(Box::pin(run)).await;
        record("sequential try_reserve".to_owned(), (value, f64::NAN));
        record(
            "redis-benchmark -P 16 -t set".to_owned(),
            (redis_benchmark(bench), f64::NAN),
        );
    }
    report_batch(BATCH, rows);
}

async fn memory(bench: &Bench) {
    const N: usize = 1_000_000;
    let ours = bench.ours_redis_moka().await;
    // Warm up allocator and connection with a first pass, then measure a second.
    drive(ours.clone(), bench.fresh("mem-warm", 50_000), 64).await;
    bench.flush();
    let before = common::rss_kib();
    for chunk in 0..10 {
        drive(
            ours.clone(),
            bench.fresh(&format!("mem{chunk}"), N / 10),
            64,
        )
        .await;
        bench.flush();
    }
    ours.0.local().run_pending_tasks();
    let after = common::rss_kib();
    println!(
        "\nmemory: {N} distinct tokens, local_cache_capacity 10,000: resident {} MiB -> {} MiB (+{:.1} MiB), L1 holds {}",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / 1024.0,
        ours.0.local().entry_count()
    );
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bench = Bench {
        server: RedisServer::start(),
        round: AtomicUsize::new(0),
    };
    println!(
        "redis-server {} on 127.0.0.1:{}, {} cores; medians of {ROUNDS} interleaved rounds",
        bench
            .server
            .cli(&["INFO", "server"])
            .lines()
            .find(|l| l.starts_with("redis_version:"))
            .unwrap_or("?"),
        bench.server.port(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    runtime.block_on(async {
        if wants("new_tokens_64") {
            new_tokens(&bench, 64).await;
        }
        if wants("new_tokens_256") {
            new_tokens(&bench, 256).await;
        }
        if wants("storm") {
            storm(&bench).await;
        }
        if wants("taken_elsewhere") {
            taken_elsewhere(&bench).await;
        }
        if wants("own_hot_token") {
            own_hot_token(&bench).await;
        }
        if wants("reserve_many") {
            batch(&bench).await;
        }
        if wants("memory") {
            memory(&bench).await;
        }
    });
}
