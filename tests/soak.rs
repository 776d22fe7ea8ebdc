//! Soak: fresh tokens and duplicates from 4 providers while the (durable)
//! server is killed and restarted every 10 s. At the end no token was
//! accepted twice, nothing panicked, and resident memory is within 10 % of
//! what it was after the first 10 s (every L1 is bounded).
//!
//! Ignored by default; `.ci/run` runs it for 60 s:
//! `cargo test --all-features --test soak -- --ignored --nocapture`
//! (`SOAK_SECS` changes the length).
#![cfg(all(feature = "redis", feature = "moka"))]

mod common;

use common::RedisServer;
use outbox_redis::{RedisTokenConfig, RedisTokenProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bound on fresh tokens in a run: one bit each, allocated up front so
/// the bookkeeping itself does not grow.
const MAX_TOKENS: u64 = 1 << 24;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// What the workers share: one bit per fresh token, and counters.
struct Tally {
    accepted: Vec<AtomicU64>,
    issued: AtomicU64,
    twice: AtomicU64,
    answers: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Tally {
    /// Records that token `n` was accepted; counts it if it already was.
    fn accept(&self, n: u64) {
        let bit = 1 << (n % 64);
        let word = usize::try_from(n / 64).expect("fits");
        if self.accepted[word].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.twice.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Half fresh tokens, half duplicates of the last 10,000, until told to stop.
async fn worker(provider: Arc<RedisTokenProvider>, tally: Arc<Tally>, mut seed: u64) {
    while !tally.stop.load(Ordering::Relaxed) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let high = tally.issued.load(Ordering::Relaxed);
        let n = if seed.is_multiple_of(2) || high == 0 {
            tally.issued.fetch_add(1, Ordering::Relaxed)
        } else {
            high.saturating_sub(1 + (seed >> 8) % high.min(10_000))
        };
        if n >= MAX_TOKENS {
            break;
        }
        if let Ok(accepted) = provider.try_reserve(&format!("soak-{n}")).await {
            tally.answers.fetch_add(1, Ordering::Relaxed);
            if accepted {
                tally.accept(n);
            }
        } else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 60 s soak; .ci/run runs it"]
async fn restarts_under_load_never_accept_a_token_twice() {
    let total = Duration::from_secs(
        std::env::var("SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut server = RedisServer::durable();
    let config = RedisTokenConfig {
        operation_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let tally = Arc::new(Tally {
        accepted: (0..MAX_TOKENS / 64).map(|_| AtomicU64::new(0)).collect(),
        issued: AtomicU64::new(0),
        twice: AtomicU64::new(0),
        answers: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..4u64 {
        let provider = Arc::new(
            RedisTokenProvider::new(&server.url(), config.clone())
                .await
                .unwrap(),
        );
        for t in 0..8u64 {
            tasks.spawn(worker(provider.clone(), tally.clone(), (p + 1) * 7919 + t));
        }
    }

    let mut rss_after_10s = 0;
    let mut restarts = 0;
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(10).min(total.saturating_sub(started.elapsed())))
            .await;
        if rss_after_10s == 0 {
            rss_after_10s = rss_kib();
        }
        if started.elapsed() + Duration::from_secs(1) < total {
            server.restart();
            restarts += 1;
        }
    }
    tally.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        joined.expect("no task panicked");
    }
    let rss_end = rss_kib();
    let twice = tally.twice.load(Ordering::Relaxed);
    let answers = tally.answers.load(Ordering::Relaxed);
    eprintln!(
        "soak {total:?}: {} fresh tokens, {answers} answers, {} errors (fail closed) over {restarts} restarts, {twice} accepted twice; resident {} MiB after 10 s, {} MiB at the end",
        tally.issued.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        rss_after_10s / 1024,
        rss_end / 1024
    );
    assert_eq!(twice, 0, "a token was accepted twice");
    assert!(
        answers > 1_000,
        "the load kept flowing between restarts: {answers} answers"
    );
    if total >= Duration::from_secs(30) {
        assert!(restarts >= 2, "{restarts} restarts");
        let limit = rss_after_10s + rss_after_10s / 10;
        assert!(
            rss_end <= limit,
            "resident memory grew from {rss_after_10s} KiB to {rss_end} KiB (limit {limit})"
        );
    }
}
