//! The algorithm of `TwoTier`: single flight, L1 population and its bounds,
//! the failure policies, timeouts, validation and the guarded path. Time-bound
//! tests run on tokio's paused clock.
#![cfg(feature = "moka")]

mod common;

use common::{run, shuffle};
use outbox_redis::backends::{MemoryStore, MokaCache, NoCache};
use outbox_redis::testing::{Fault, FaultyStore};
use outbox_redis::{Error, FailurePolicy, Once, RedisTokenConfig, TwoTier};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

type Faulty = FaultyStore<MemoryStore>;

fn config() -> RedisTokenConfig {
    RedisTokenConfig {
        ttl: Duration::from_secs(60),
        local_ttl: Duration::from_secs(1),
        lease: Duration::from_secs(5),
        operation_timeout: Duration::from_millis(200),
        ..Default::default()
    }
}

fn moka_over(store: &Faulty, config: RedisTokenConfig) -> TwoTier<MokaCache, Faulty> {
    TwoTier::with_store(store.clone(), config).expect("valid config")
}

fn fail_open_over(store: &Faulty) -> TwoTier<MokaCache, Faulty> {
    moka_over(
        store,
        RedisTokenConfig {
            failure_policy: FailurePolicy::FailOpen,
            ..config()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_reaches_the_store_once_per_token() {
    let store = FaultyStore::new(MemoryStore::new());
    // The store answers after 1 ms, as a network round trip would, so the 100
    // copies of each token really are in flight together.
    store.set_fault(Fault::Delay(Duration::from_millis(1)));
    let provider = Arc::new(moka_over(&store, config()));
    // 1,000 tokens x 100 requests, each token's copies sent close together.
    let mut requests = Vec::with_capacity(100_000);
    for chunk in 0..10 {
        let mut burst: Vec<String> = (0..100)
            .flat_map(|t| std::iter::repeat_n(format!("storm-{}", chunk * 100 + t), 100))
            .collect();
        shuffle(&mut burst, 0x9e37_79b9 + chunk);
        requests.extend(burst);
    }
    let accepted = run(provider.clone(), requests, 256).await;
    assert_eq!(accepted, 1_000, "exactly one request per token is accepted");
    let calls = store.calls().reserve;
    assert!(calls <= 1_000, "{calls} store reserves for 1,000 tokens");
    assert!(
        provider.stats().coalesced > 0,
        "concurrent duplicates waited on one call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_store_never_both_accept() {
    let store = FaultyStore::new(MemoryStore::new());
    let a = Arc::new(moka_over(&store, config()));
    let b = Arc::new(moka_over(&store, config()));
    let mut tokens: Vec<String> = (0..2_000).map(|i| format!("shared-{i}")).collect();
    shuffle(&mut tokens, 7);
    let mut reversed = tokens.clone();
    reversed.reverse();
    let (x, y) = tokio::join!(run(a, tokens, 8), run(b, reversed, 8));
    assert_eq!(x + y, 2_000, "each token accepted by exactly one instance");
}

#[tokio::test(start_paused = true)]
async fn another_instances_token_is_remembered_at_most_local_ttl() {
    let store = FaultyStore::new(MemoryStore::new());
    let a = moka_over(&store, config());
    let b = moka_over(&store, config());
    assert!(a.try_reserve("t").await.unwrap());
    assert!(!b.try_reserve("t").await.unwrap());
    let calls = store.calls().reserve;
    assert!(!b.try_reserve("t").await.unwrap());
    assert_eq!(
        store.calls().reserve,
        calls,
        "within local_ttl, answered from L1"
    );

    assert!(
        a.release("t").await.unwrap(),
        "a releases its own reservation"
    );
    assert!(
        !b.try_reserve("t").await.unwrap(),
        "stale by design until local_ttl passes"
    );
    tokio::time::advance(Duration::from_millis(1_001)).await;
    assert!(
        b.try_reserve("t").await.unwrap(),
        "after local_ttl b asks the store again"
    );
    assert_eq!(store.calls().reserve, calls + 1);
}

#[tokio::test(start_paused = true)]
async fn someone_elses_token_is_never_remembered_past_its_store_expiry() {
    let store = FaultyStore::new(MemoryStore::new());
    let short = RedisTokenConfig {
        ttl: Duration::from_millis(300),
        lease: Duration::from_millis(100),
        local_ttl: Duration::from_secs(10),
        ..config()
    };
    let a = moka_over(&store, short.clone());
    let b = moka_over(&store, short);
    assert!(a.try_reserve("t").await.unwrap());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(!b.try_reserve("t").await.unwrap());
    tokio::time::advance(Duration::from_millis(201)).await;
    assert!(
        b.try_reserve("t").await.unwrap(),
        "L2 expired after 300 ms; L1's 10 s local_ttl must not outlive it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_is_accepted_again_after_its_ttl() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    assert!(provider.try_reserve("t").await.unwrap());
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(!provider.try_reserve("t").await.unwrap());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(provider.try_reserve("t").await.unwrap());
}

#[tokio::test]
async fn a_failing_store_is_an_error_under_fail_closed() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    store.set_fault(Fault::Unavailable);
    let error = provider.try_reserve("t").await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    assert!(error.is_transient());
    store.set_fault(Fault::None);
    assert!(
        provider.try_reserve("t").await.unwrap(),
        "nothing was remembered for the failed call"
    );
}

#[tokio::test]
async fn fail_open_accepts_once_then_rejects_local_duplicates() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = fail_open_over(&store);
    store.set_fault(Fault::Unavailable);
    assert!(provider.try_reserve("t").await.unwrap());
    assert!(!provider.try_reserve("t").await.unwrap());
    assert_eq!(provider.stats().failed_open, 1);
    assert_eq!(
        provider.try_reserve_many(&["u", "u", "t"]).await.unwrap(),
        vec![true, false, false]
    );
}

#[tokio::test]
async fn fail_open_rides_out_outages_but_not_refusals() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = fail_open_over(&store);
    store.set_fault(Fault::Refuse);
    let error = provider.try_reserve("t").await.unwrap_err();
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");
    assert_eq!(provider.stats().failed_open, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_times_out_within_the_operation_timeout() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = Arc::new(moka_over(&store, config()));
    store.set_fault(Fault::Hang);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let provider = provider.clone();
        set.spawn(async move { provider.try_reserve("slow").await });
    }
    while let Some(joined) = set.join_next().await {
        match joined.unwrap() {
            Err(Error::Timeout { operation, after }) => {
                assert_eq!(operation, "reserve");
                assert_eq!(after, Duration::from_millis(200));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(250),
        "timed out after {elapsed:?}"
    );
    assert_eq!(
        store.calls().reserve,
        1,
        "the 10 concurrent callers shared one call"
    );
}

#[tokio::test]
async fn invalid_tokens_are_errors_and_reach_no_store() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(
        &store,
        RedisTokenConfig {
            max_token_len: 8,
            ..config()
        },
    );
    for token in ["", "123456789"] {
        assert!(matches!(
            provider.try_reserve(token).await,
            Err(Error::InvalidToken { .. })
        ));
        assert!(matches!(
            provider.release(token).await,
            Err(Error::InvalidToken { .. })
        ));
        assert!(matches!(
            provider.once(token, async { Ok::<(), ()>(()) }).await,
            Err(Error::InvalidToken { .. })
        ));
        assert!(matches!(
            provider.try_reserve_many(&["ok", token]).await,
            Err(Error::InvalidToken { .. })
        ));
    }
    assert_eq!(store.calls(), outbox_redis::testing::Calls::default());
    let oversized = "x".repeat(10_000);
    assert!(provider.try_reserve(&oversized).await.is_err());
}

#[tokio::test]
async fn invalid_config_is_rejected_at_construction() {
    let result = TwoTier::<NoCache, _>::with_store(
        MemoryStore::new(),
        RedisTokenConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let error = result.unwrap_err().to_string();
    assert!(error.contains("`ttl`"), "{error}");
}

#[tokio::test]
async fn release_frees_this_instances_reservation() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    assert!(provider.try_reserve("t").await.unwrap());
    assert!(provider.release("t").await.unwrap());
    assert!(
        !provider.release("t").await.unwrap(),
        "nothing left to release"
    );
    assert!(provider.try_reserve("t").await.unwrap());

    let other = moka_over(&store, config());
    assert!(!other.release("t").await.unwrap(), "not other's to release");
    assert!(!other.try_reserve("t").await.unwrap());
}

#[tokio::test]
async fn once_commits_on_success_and_releases_on_failure() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = TwoTier::<NoCache, _>::with_store(store.clone(), config()).unwrap();
    let ran = AtomicUsize::new(0);
    let failed = provider
        .once("t", async {
            ran.fetch_add(1, Ordering::Relaxed);
            Err::<u32, _>("boom")
        })
        .await
        .unwrap();
    assert_eq!(failed, Once::Failed("boom"));
    assert!(store.inner().is_empty(), "released after the failure");
    let done = provider
        .once("t", async {
            ran.fetch_add(1, Ordering::Relaxed);
            Ok::<_, &str>(7)
        })
        .await
        .unwrap();
    assert_eq!(done, Once::Done(7));
    let left = store.inner().ttl_of("i_token:t").expect("committed");
    assert!(
        left > Duration::from_secs(50),
        "committed to the full ttl, {left:?} left"
    );
    let duplicate = provider
        .once("t", async {
            ran.fetch_add(1, Ordering::Relaxed);
            Ok::<_, &str>(8)
        })
        .await
        .unwrap();
    assert!(!duplicate.ran());
    assert_eq!(ran.load(Ordering::Relaxed), 2);
    assert!(!provider.try_reserve("t").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn once_reports_a_lost_lease() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    let other = moka_over(&store, config());
    let result = provider
        .once("t", async {
            tokio::time::sleep(Duration::from_secs(6)).await; // lease is 5 s
            assert!(
                other.try_reserve("t").await.unwrap(),
                "the lease expired: the token is free"
            );
            Ok::<_, ()>(())
        })
        .await;
    assert!(matches!(result, Err(Error::LeaseLost { .. })), "{result:?}");
    assert!(
        !other.try_reserve("t").await.unwrap(),
        "the other holder keeps it"
    );
}

#[tokio::test]
async fn once_under_a_failing_store_does_not_run_the_work() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    store.set_fault(Fault::Unavailable);
    let ran = AtomicUsize::new(0);
    let result = provider
        .once("t", async {
            ran.fetch_add(1, Ordering::Relaxed);
            Ok::<(), ()>(())
        })
        .await;
    assert!(result.is_err());
    assert_eq!(ran.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn reserve_many_agrees_with_single_calls() {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = moka_over(&store, config());
    let other = moka_over(&store, config());
    assert!(other.try_reserve("b").await.unwrap());
    let answers = provider
        .try_reserve_many(&["a", "b", "c", "a"])
        .await
        .unwrap();
    assert_eq!(answers, vec![true, false, true, false]);
    assert_eq!(store.calls().reserve_many, 1, "one batch call");
    for token in ["a", "b", "c"] {
        assert!(!other.try_reserve(token).await.unwrap());
    }
    assert_eq!(
        provider.try_reserve_many(&[]).await.unwrap(),
        Vec::<bool>::new()
    );
}

#[tokio::test]
async fn a_cancelled_leader_lets_a_waiting_caller_take_over() {
    let store = FaultyStore::new(MemoryStore::new());
    store.set_fault(Fault::Delay(Duration::from_millis(50)));
    let provider = Arc::new(moka_over(&store, config()));
    let leader = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.try_reserve("t").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let follower = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.try_reserve("t").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert!(
        follower.await.unwrap().unwrap(),
        "the follower reserved the token itself"
    );
}
