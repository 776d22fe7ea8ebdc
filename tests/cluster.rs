//! Both Redis backends on a real Redis Cluster (3 masters, 3 replicas):
//! the L2 conformance suite, exactly-once across instances, hostile hash
//! tags spread over the masters, and a master killed mid-run.
#![cfg(all(feature = "cluster", any(feature = "redis", feature = "fred")))]

mod common;

use common::{RedisCluster, Tally, run, shuffle, worker};
use outbox_redis::{Claim, DefaultCache, KeyMode, Owner, RedisTokenConfig, RemoteStore, TwoTier};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn config() -> RedisTokenConfig {
    RedisTokenConfig {
        operation_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

macro_rules! cluster_tests {
    ($backend:ident, $feature:literal, $store:ty) => {
        #[cfg(feature = $feature)]
        mod $backend {
            use super::*;

            type Store = $store;
            type Provider = TwoTier<DefaultCache, Store>;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn conformance_exactly_once_and_hash_tags_on_a_cluster() {
                let cluster = RedisCluster::start();
                let store = Store::connect(&cluster.url(), &config()).await.expect("connect to the cluster");
                outbox_redis::testing::l2_conformance(Arc::new(store), "i_token").await;

                // Exactly once: 4 providers x 16 tasks, 10,000 tokens x 5.
                let mut providers = Vec::new();
                for _ in 0..4 {
                    providers.push(Arc::new(Provider::new(&cluster.url(), config()).await.unwrap()));
                }
                let mut requests: Vec<String> = (0..10_000)
                    .flat_map(|t| std::iter::repeat_n(format!("once-{t}"), 5))
                    .collect();
                shuffle(&mut requests, 11);
                let mut shares: Vec<Vec<String>> = vec![Vec::new(); 4];
                for (i, r) in requests.into_iter().enumerate() {
                    shares[i % 4].push(r);
                }
                let mut handles = Vec::new();
                for (provider, share) in providers.into_iter().zip(shares) {
                    handles.push(tokio::spawn(run(provider, share, 16)));
                }
                let mut accepted = 0;
                for handle in handles {
                    accepted += handle.await.unwrap();
                }
                assert_eq!(accepted, 10_000);

                // Hostile hash tags spread over all masters, in both key modes.
                for mode in [KeyMode::Readable, KeyMode::Digest] {
                    for node in cluster.nodes.iter() {
                        if node.cli(&["ROLE"]).starts_with("master") {
                            node.cli(&["FLUSHALL"]);
                        }
                    }
                    let provider = Provider::new(&cluster.url(), RedisTokenConfig { key_mode: mode, ..config() }).await.unwrap();
                    let tokens: Vec<String> = (0..10_000).map(|n| format!("{{same}}{n}")).collect();
                    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
                    let answers = provider.try_reserve_many(&refs).await.unwrap();
                    assert!(answers.iter().all(|&a| a));
                    let per_master = cluster.keys_per_master();
                    assert_eq!(per_master.len(), 3);
                    for held in per_master {
                        assert!(held >= 2_000, "{mode:?}: a master holds only {held} of 10,000 keys");
                    }
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reserve_many_follows_slots_that_moved() {
                let mut cluster = RedisCluster::start();
                let store = Store::connect(&cluster.url(), &config()).await.expect("connect to the cluster");
                let ttl = Duration::from_secs(600);
                let keys = |name: &str| -> Vec<String> { (0..1_000).map(|i| format!("i_token:{name}-{i}")).collect() };
                let reserved = |claims: Vec<Claim>| claims.iter().all(|c| *c == Claim::Reserved);
                let taken = |claims: Vec<Claim>| claims.iter().all(|c| matches!(c, Claim::Taken { .. }));

                let before = keys("before");
                assert!(reserved(store.reserve_many(&before, Owner::new(1, 1), ttl).await.unwrap()));
                // A replica takes over one shard: what the store learnt of the
                // slots is stale for a third of the keys.
                let moved = cluster.fail_over(cluster.master_of(slot_of("i_token:before-0")));
                let after = keys("after");
                assert!(reserved(store.reserve_many(&after, Owner::new(1, 2), ttl).await.unwrap()));
                assert!(taken(store.reserve_many(&before, Owner::new(2, 1), ttl).await.unwrap()));
                assert!(reserved(store.reserve_many(&after, Owner::new(1, 2), ttl).await.unwrap()), "the same owner again");

                // The promoted master dies and its old master takes over again:
                // the store still addresses a node that is gone.
                cluster.wait_replicated(moved);
                cluster.nodes[moved].stop();
                cluster.wait_ok(Duration::from_secs(30));
                let last = keys("last");
                assert!(reserved(store.reserve_many(&last, Owner::new(1, 3), ttl).await.unwrap()));
                assert!(taken(store.reserve_many(&before, Owner::new(3, 1), ttl).await.unwrap()));
                assert_eq!(cluster.keys_per_master().iter().sum::<u64>(), 3_000, "every key once, on a master");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lost_master_never_lets_a_token_be_accepted_twice() {
                let mut cluster = RedisCluster::start();
                let config = RedisTokenConfig {
                    replica_acks: 1,
                    replica_ack_timeout: Duration::from_millis(300),
                    operation_timeout: Duration::from_secs(1),
                    ..config()
                };
                let tally = Arc::new(Tally::new());
                let mut tasks = tokio::task::JoinSet::new();
                for p in 0..4u64 {
                    let provider = Arc::new(Provider::new(&cluster.url(), config.clone()).await.unwrap());
                    for t in 0..4u64 {
                        tasks.spawn(worker(provider.clone(), tally.clone(), (p + 1) * 104_729 + t));
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                // The master of the slot that `i_token:soak-0` hashes to.
                let victim = cluster.master_of(slot_of("i_token:soak-0"));
                let before = tally.answers.load(Ordering::Relaxed);
                cluster.nodes[victim].stop();
                cluster.wait_ok(Duration::from_secs(30));
                let failed_over = tally.started.elapsed();
                // With replica_acks = 1 the promoted master's shard accepts
                // nothing until it has a replica again: bring the old master
                // back, as operators do; it rejoins as the new master's replica.
                cluster.nodes[victim].restart();
                cluster.wait_ok(Duration::from_secs(30));
                let replica_back = tally.started.elapsed();
                let at_recovery = tally.answers.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(5)).await;
                tally.stop.store(true, Ordering::Relaxed);
                while let Some(joined) = tasks.join_next().await {
                    joined.expect("no task panicked");
                }
                let answers = tally.answers.load(Ordering::Relaxed);
                eprintln!(
                    "{}: {} fresh tokens, {answers} answers, {} errors, error window {:?}; killed at 2 s, cluster ok again at {failed_over:?}, replica back at {replica_back:?}",
                    stringify!($backend),
                    tally.issued.load(Ordering::Relaxed),
                    tally.errors.load(Ordering::Relaxed),
                    tally.error_window()
                );
                assert_eq!(tally.twice.load(Ordering::Relaxed), 0, "a token was accepted twice");
                assert!(
                    answers > at_recovery + 1_000,
                    "the providers recovered without a restart: {before} answers before the kill, {at_recovery} when the replica was back, {answers} at the end"
                );
            }
        }
    };
}

/// The cluster slot of `key` as Redis computes it (CRC16 of the key; these
/// keys carry no hash tag).
fn slot_of(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in key.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc % 16_384
}

cluster_tests!(redis_rs, "redis", outbox_redis::backends::RedisStore);
cluster_tests!(fred, "fred", outbox_redis::backends::FredStore);
