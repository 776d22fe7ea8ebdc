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
