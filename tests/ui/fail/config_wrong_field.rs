// outbox-redis 0.1 users sometimes reach for a seconds field; the TTL is a Duration named `ttl`.
use outbox_redis::RedisTokenConfig;

fn main() {
    let _config = RedisTokenConfig {
        ttl_secs: 3600,
        ..Default::default()
    };
}
