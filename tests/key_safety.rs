//! Keys are safe against hostile tokens: tokens of the form `{same}N` spread
//! over the slots of a 3-master Redis Cluster in both key modes (Redis's own
//! `CLUSTER KEYSLOT` decides), and a huge token does not make a huge key in
//! digest mode.
#![cfg(feature = "redis")]

mod common;

use common::RedisServer;
use outbox_redis::{KeyMode, RedisTokenConfig};

/// The share of `keys` in each third of the 16,384 slots, as
/// `redis-cli --cluster create` assigns them to 3 masters.
async fn shares(node: &RedisServer, keys: &[String]) -> [f64; 3] {
    let client = redis::Client::open(node.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
    }
    let slots: Vec<u16> = pipe.query_async(&mut conn).await.expect("CLUSTER KEYSLOT");
    let mut counts = [0u32; 3];
    for slot in slots {
        counts[match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        }] += 1;
    }
    let total = f64::from(u32::try_from(keys.len()).expect("fits"));
    counts.map(|c| f64::from(c) / total)
}

#[tokio::test]
async fn hash_tags_in_tokens_do_not_pin_keys_to_one_slot() {
    let node = RedisServer::cluster_node();
    let tokens: Vec<String> = (0..10_000).map(|n| format!("{{same}}{n}")).collect();

    // What a naive prefix:token key does: every key in one slot.
    let naive: Vec<String> = tokens.iter().map(|t| format!("i_token:{t}")).collect();
    assert!(
        shares(&node, &naive).await.contains(&1.0),
        "the naive keys share one slot"
    );

    for mode in [KeyMode::Readable, KeyMode::Digest] {
        let config = RedisTokenConfig {
            key_mode: mode,
            ..Default::default()
        };
        let keys: Vec<String> = tokens.iter().map(|t| config.key(t)).collect();
        let share = shares(&node, &keys).await;
        for (master, s) in share.iter().enumerate() {
            assert!(
                *s >= 0.20,
                "{mode:?}: master {master} holds {:.1}% of the keys",
                s * 100.0
            );
        }
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{mode:?}: one key per token");
    }
}

#[test]
fn a_huge_token_makes_a_fixed_length_key_in_digest_mode() {
    let config = RedisTokenConfig {
        key_mode: KeyMode::Digest,
        max_token_len: 1 << 20,
        ..Default::default()
    };
    let short = config.key("a");
    let huge = config.key(&"x".repeat(1 << 20));
    assert_eq!(short.len(), huge.len());
    assert_eq!(huge.len(), "i_token:#".len() + 64);
    assert_ne!(config.key("a"), config.key("b"));
}
