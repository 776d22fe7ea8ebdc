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

use common::{RedisServer, Tally, worker};
use outbox_redis::{RedisTokenConfig, RedisTokenProvider};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    let tally = Arc::new(Tally::new());
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
            rss_after_10s = common::rss_kib();
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
    let rss_end = common::rss_kib();
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
