//! Every in-process backend against the conformance suites of
//! `outbox_redis::testing`. The Redis backends run the same suites in
//! their own test files against real servers.

use outbox_redis::backends::{MemoryStore, NoCache};
use outbox_redis::testing::{FaultyStore, l1_conformance, l2_conformance};
use std::sync::Arc;

#[test]
fn l1_no_cache() {
    l1_conformance(|_| NoCache, false);
}

#[cfg(feature = "moka")]
#[test]
fn l1_moka() {
    l1_conformance(outbox_redis::backends::MokaCache::new, true);
}

#[cfg(feature = "mini-moka")]
#[test]
fn l1_mini_moka() {
    l1_conformance(outbox_redis::backends::MiniMokaCache::new, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_memory() {
    l2_conformance(Arc::new(MemoryStore::new()), "memory").await;
}

#[tokio::test(start_paused = true)]
async fn l2_memory_on_paused_clock() {
    l2_conformance(Arc::new(MemoryStore::new()), "paused").await;
}

#[tokio::test]
async fn l2_faulty_store_passes_through() {
    l2_conformance(Arc::new(FaultyStore::new(MemoryStore::new())), "faulty").await;
}

/// The windowed L1s keep a token that was seen again through a flood of new
/// tokens (it moves to the main cache when the window evicts it), and let the
/// flood itself go.
#[cfg(any(feature = "moka", feature = "mini-moka"))]
fn hot_token_outlives_a_flood<C: outbox_redis::LocalCache>(cache: &C) {
    use outbox_redis::{Owner, Seen};
    use std::time::Duration;
    use tokio::time::Instant;
    let deadline = Instant::now() + Duration::from_secs(600);
    let hot = Seen::Ours(Owner::new(1, 1));
    cache.insert("hot", hot, deadline);
    assert_eq!(cache.get("hot", Instant::now()), Some(hot), "seen again");
    for i in 0..100_000 {
        cache.insert(&format!("flood-{i}"), Seen::Theirs, deadline);
    }
    cache.run_pending_tasks();
    assert_eq!(
        cache.get("hot", Instant::now()),
        Some(hot),
        "the hot token survived"
    );
    assert_eq!(
        cache.get("flood-0", Instant::now()),
        None,
        "the first cold token did not"
    );
    assert!(cache.entry_count() <= 11_000, "{}", cache.entry_count());
}

#[cfg(feature = "moka")]
#[test]
fn moka_keeps_hot_tokens() {
    hot_token_outlives_a_flood(&outbox_redis::backends::MokaCache::new(10_000));
}

#[cfg(feature = "mini-moka")]
#[test]
fn mini_moka_keeps_hot_tokens() {
    hot_token_outlives_a_flood(&outbox_redis::backends::MiniMokaCache::new(10_000));
}
