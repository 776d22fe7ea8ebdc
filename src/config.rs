//! [`RedisTokenConfig`]: every knob of a provider, with defaults that suit a
//! typical web service.
//!
//! The struct has public fields and implements [`Default`], so the form the
//! README uses compiles as is:
//!
//! ```
//! use outbox_redis::config::RedisTokenConfig;
//! use std::time::Duration;
//!
//! let config = RedisTokenConfig {
//!     ttl: Duration::from_secs(3600),
//!     ..Default::default()
//! };
//! assert!(config.validate().is_ok());
//! ```

use crate::error::{Error, Result};
use std::time::Duration;

/// What a provider does when the shared store fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Return the error; the caller decides. No token is accepted that the
    /// store has not confirmed. The default, and the only choice that keeps
    /// "exactly once" under faults.
    #[default]
    FailClosed,
    /// On an outage (timeout, unreachable store, missing replica
    /// acknowledgements) accept the token as new, remember it in the local
    /// cache so duplicates reaching this instance are still rejected, log a
    /// warning and count it (see `TwoTier::stats`). Errors that need a fix —
    /// credentials, ACL, other store errors — are still returned. Duplicates reaching other instances during the
    /// outage are accepted too: availability over exactly-once.
    FailOpen,
}

/// How a token becomes a store key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// `{key_prefix}:{token}`, readable and compatible with outbox-redis
    /// 0.1.x — except that a token containing `{` gets a hash tag of its own
    /// in front, `{key_prefix}:{<16 hex digits of its SHA-256>}:{token}`, so
    /// that a client cannot pin keys to one Redis Cluster slot with tokens
    /// like `{same}1`, `{same}2`, ….
    #[default]
    Readable,
    /// `{key_prefix}:#<64 hex digits of the token's SHA-256>`: every key has
    /// the same length whatever the token's, and says nothing of it.
    /// Switching an existing deployment to it forgets its reservations.
    Digest,
}

/// Configuration shared by every provider (`TwoTier` and its aliases).
///
/// | field | default |
/// |---|---|
/// | `ttl` | 24 h |
/// | `key_prefix` | `"i_token"` |
/// | `local_cache_capacity` | 10,000 |
/// | `local_ttl` | 1 s |
/// | `lease` | 30 s |
/// | `operation_timeout` | 1 s |
/// | `connect_timeout` | 5 s |
/// | `failure_policy` | [`FailurePolicy::FailClosed`] |
/// | `max_token_len` | 512 bytes |
/// | `replica_acks` | 0 (do not wait) |
/// | `replica_ack_timeout` | 100 ms |
/// | `key_mode` | [`KeyMode::Readable`] |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTokenConfig {
    /// How long a reserved token stays reserved in the shared store before it
    /// can be used again. Millisecond precision; at least 1 ms.
    pub ttl: Duration,
    /// Prefix of every key in the shared store: a token `t` lives at
    /// `{key_prefix}:t`. Must not be empty.
    pub key_prefix: String,
    /// Most entries the local (L1) cache keeps; ignored by `NoCache`.
    pub local_cache_capacity: u64,
    /// How long this instance remembers that *another* caller holds a token,
    /// answering "duplicate" without asking the store. Bounds how stale that
    /// answer can be after the other holder releases. Zero disables it.
    pub local_ttl: Duration,
    /// How long the guarded path (`TwoTier::once`) holds a token while its work
    /// runs, before committing it to `ttl`. If the process dies mid-work the
    /// token becomes free again after this long. Capped at `ttl`.
    pub lease: Duration,
    /// Time limit for one store operation (reserve, commit, release).
    pub operation_timeout: Duration,
    /// Time limit for establishing a connection to the store.
    pub connect_timeout: Duration,
    /// What to do when the store fails or times out.
    pub failure_policy: FailurePolicy,
    /// Longest token accepted, in bytes; longer tokens are rejected as invalid
    /// input before any store is contacted.
    pub max_token_len: usize,
    /// How many replicas must acknowledge a reservation (`WAIT`) before it
    /// counts, so that a master lost right after the claim cannot let the
    /// same token be accepted twice. `0` (the default) does not wait. When
    /// fewer replicas acknowledge within `replica_ack_timeout`, the
    /// reservation is released and [`Error::NotReplicated`] returned.
    pub replica_acks: u32,
    /// How long a reservation waits for `replica_acks` acknowledgements.
    /// A call that waits is bounded by `operation_timeout` plus this (see
    /// [`call_timeout`](Self::call_timeout)): Redis answers `WAIT` only on
    /// its next timer tick after the timeout (up to 100 ms late at the
    /// default `hz 10`), and the round trip still needs its own budget.
    pub replica_ack_timeout: Duration,
    /// How a token becomes a key: readable (the default) or a digest.
    pub key_mode: KeyMode,
}

impl Default for RedisTokenConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_hours(24),
            key_prefix: "i_token".to_owned(),
            local_cache_capacity: 10_000,
            local_ttl: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            failure_policy: FailurePolicy::FailClosed,
            max_token_len: 512,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(100),
            key_mode: KeyMode::Readable,
        }
    }
}

/// Longest duration accepted anywhere in the configuration: ten years. Keeps
/// deadline arithmetic (`Instant + Duration`) and millisecond counts sent to
/// the store far from overflow.
const MAX_DURATION: Duration = Duration::from_hours(10 * 365 * 24);

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

fn check_duration(field: &'static str, value: Duration, min: Duration) -> Result<()> {
    if value < min {
        return Err(invalid(
            field,
            format!("is {value:?}; it must be at least {min:?}"),
        ));
    }
    if value > MAX_DURATION {
        return Err(invalid(
            field,
            format!("is {value:?}; it must be at most ten years"),
        ));
    }
    Ok(())
}

impl RedisTokenConfig {
    /// Checks every field, returning the first problem found with the field's
    /// name. Providers call this at construction, so a bad value never
    /// reaches the store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field when a duration is zero (or
    /// under 1 ms where milliseconds are sent to the store) or over ten years,
    /// when `key_prefix` is empty or contains
    /// whitespace, or when `local_cache_capacity` or `max_token_len` is zero.
    pub fn validate(&self) -> Result<()> {
        let ms = Duration::from_millis(1);
        check_duration("ttl", self.ttl, ms)?;
        check_duration("lease", self.lease, ms)?;
        check_duration("local_ttl", self.local_ttl, Duration::ZERO)?;
        check_duration("operation_timeout", self.operation_timeout, ms)?;
        check_duration("connect_timeout", self.connect_timeout, ms)?;
        if self.key_prefix.is_empty() {
            return Err(invalid(
                "key_prefix",
                "is empty; use a non-empty prefix such as \"i_token\"",
            ));
        }
        if self.key_prefix.chars().any(char::is_whitespace) {
            return Err(invalid(
                "key_prefix",
                format!("{:?} contains whitespace; remove it", self.key_prefix),
            ));
        }
        if self.local_cache_capacity == 0 {
            return Err(invalid(
                "local_cache_capacity",
                "is 0; use at least 1 (or the NoCache L1 to disable local caching)",
            ));
        }
        if self.max_token_len == 0 {
            return Err(invalid("max_token_len", "is 0; use at least 1"));
        }
        if self.replica_acks > 0 {
            check_duration("replica_ack_timeout", self.replica_ack_timeout, ms)?;
        }
        Ok(())
    }

    /// The longest one store call may take before it fails with
    /// [`Error::Timeout`]: `operation_timeout`, plus
    /// `replica_ack_timeout` when `replica_acks` is set, because such a call
    /// deliberately waits for the replicas on top of its round trip.
    ///
    /// ```
    /// use std::time::Duration;
    /// use outbox_redis::RedisTokenConfig;
    /// let config = RedisTokenConfig::default();
    /// assert_eq!(config.call_timeout(), Duration::from_secs(1));
    /// let acked = RedisTokenConfig { replica_acks: 1, ..config };
    /// assert_eq!(acked.call_timeout(), Duration::from_millis(1100));
    /// ```
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        if self.replica_acks > 0 {
            self.operation_timeout
                .saturating_add(self.replica_ack_timeout)
        } else {
            self.operation_timeout
        }
    }

    /// The Redis ACL rules that are enough for a provider with this
    /// configuration, and no more: its keys only (`~{key_prefix}:*`), no
    /// channels, and only the commands the Redis backends send — `SET`, `PTTL`
    /// (keys written by 0.1.x), `EVALSHA` and `SCRIPT LOAD` for release and
    /// commit, `GET` and `DEL` inside those scripts, `SELECT` for a database
    /// in the URL, `PING`, `CLIENT ID` and `INFO`, which fred sends when it
    /// connects, `CLUSTER SLOTS` and `ASKING`, which cluster clients send; and
    /// `WAIT` when `replica_acks` is set.
    ///
    /// ```
    /// use outbox_redis::RedisTokenConfig;
    /// let rules = RedisTokenConfig::default().acl_rules();
    /// assert!(rules.starts_with("resetkeys ~i_token:* resetchannels -@all +set"));
    /// // ACL SETUSER outbox on >secret <rules>
    /// ```
    #[must_use]
    pub fn acl_rules(&self) -> String {
        format!(
            "resetkeys ~{}:* resetchannels -@all +set +get +del +pttl +evalsha +script|load +select +ping +client|id +info +cluster|slots +asking{}",
            self.key_prefix,
            if self.replica_acks > 0 { " +wait" } else { "" }
        )
    }

    /// The store key of `token`, as [`KeyMode`] describes.
    ///
    /// ```
    /// use outbox_redis::config::{KeyMode, RedisTokenConfig};
    /// let config = RedisTokenConfig::default();
    /// assert_eq!(config.key("order-1"), "i_token:order-1");
    /// assert!(config.key("{same}1").starts_with("i_token:{"));
    /// assert!(config.key("{same}1").ends_with("}:{same}1"));
    /// let digest = RedisTokenConfig { key_mode: KeyMode::Digest, ..config };
    /// assert_eq!(digest.key(&"x".repeat(500)).len(), "i_token:#".len() + 64);
    /// ```
    #[must_use]
    pub fn key(&self, token: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut key = String::with_capacity(self.key_prefix.len() + 20 + token.len().max(64));
        key.push_str(&self.key_prefix);
        key.push(':');
        match self.key_mode {
            KeyMode::Readable if token.contains('{') => {
                let digest = Sha256::digest(token.as_bytes());
                key.push('{');
                push_hex(&mut key, &digest[..8]);
                key.push_str("}:");
                key.push_str(token);
            }
            KeyMode::Readable => key.push_str(token),
            KeyMode::Digest => {
                key.push('#');
                push_hex(&mut key, &Sha256::digest(token.as_bytes()));
            }
        }
        key
    }

    /// Checks a token against the rules: non-empty and at most
    /// `max_token_len` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`] saying which rule the token breaks.
    pub fn check_token(&self, token: &str) -> Result<()> {
        if token.is_empty() {
            return Err(Error::InvalidToken {
                reason: "the token is empty; send a non-empty token".to_owned(),
            });
        }
        if token.len() > self.max_token_len {
            return Err(Error::InvalidToken {
                reason: format!(
                    "the token is {} bytes, over `max_token_len` ({}); send a shorter token or raise the limit",
                    token.len(),
                    self.max_token_len
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &RedisTokenConfig) -> &'static str {
        match config.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_match_the_readme() {
        let c = RedisTokenConfig::default();
        c.validate().expect("defaults validate");
        let short = RedisTokenConfig {
            ttl: Duration::from_millis(250),
            ..Default::default()
        };
        short
            .validate()
            .expect("a TTL under the default lease is fine: the lease is capped");
        assert_eq!(c.ttl, Duration::from_hours(24));
        assert_eq!(c.key_prefix, "i_token");
        assert_eq!(c.local_cache_capacity, 10_000);
        assert_eq!(c.failure_policy, FailurePolicy::FailClosed);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = RedisTokenConfig::default();
        let cases: Vec<(RedisTokenConfig, &str)> = vec![
            (
                RedisTokenConfig {
                    ttl: Duration::ZERO,
                    ..base.clone()
                },
                "ttl",
            ),
            (
                RedisTokenConfig {
                    ttl: Duration::from_micros(999),
                    lease: Duration::from_micros(999),
                    ..base.clone()
                },
                "ttl",
            ),
            (
                RedisTokenConfig {
                    ttl: Duration::MAX,
                    ..base.clone()
                },
                "ttl",
            ),
            (
                RedisTokenConfig {
                    lease: Duration::ZERO,
                    ..base.clone()
                },
                "lease",
            ),
            (
                RedisTokenConfig {
                    local_ttl: Duration::MAX,
                    ..base.clone()
                },
                "local_ttl",
            ),
            (
                RedisTokenConfig {
                    operation_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "operation_timeout",
            ),
            (
                RedisTokenConfig {
                    connect_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "connect_timeout",
            ),
            (
                RedisTokenConfig {
                    key_prefix: String::new(),
                    ..base.clone()
                },
                "key_prefix",
            ),
            (
                RedisTokenConfig {
                    key_prefix: "a b".into(),
                    ..base.clone()
                },
                "key_prefix",
            ),
            (
                RedisTokenConfig {
                    local_cache_capacity: 0,
                    ..base.clone()
                },
                "local_cache_capacity",
            ),
            (
                RedisTokenConfig {
                    max_token_len: 0,
                    ..base.clone()
                },
                "max_token_len",
            ),
        ];
        for (config, field) in &cases {
            assert_eq!(field_of(config), *field, "{config:?}");
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn tokens_are_checked() {
        let c = RedisTokenConfig {
            max_token_len: 4,
            ..Default::default()
        };
        assert!(c.check_token("abcd").is_ok());
        assert!(matches!(c.check_token(""), Err(Error::InvalidToken { .. })));
        let long = c.check_token("abcde").unwrap_err().to_string();
        assert!(long.contains("max_token_len"), "{long}");
        assert_eq!(c.key("t"), "i_token:t");
    }
}
