//! The crate's one error type.
//!
//! Variants are split by what a caller does next: fix the input or the
//! configuration ([`Error::InvalidToken`], [`Error::InvalidConfig`],
//! [`Error::InvalidUrl`]), retry later ([`Error::Timeout`],
//! [`Error::Unavailable`]), fix the credentials ([`Error::Auth`]), or look at
//! the cause ([`Error::Store`], [`Error::LeaseLost`]). Every message says what
//! went wrong and what to change.

use std::sync::Arc;
use std::time::Duration;

/// A boxed, shareable cause. Shared (`Arc`) so that callers waiting on the same
/// in-flight reservation can all receive the one error the store returned.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when reserving, committing or releasing a token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token cannot be used as given (empty, or longer than
    /// `RedisTokenConfig::max_token_len`). No store was contacted.
    #[error("invalid idempotency token: {reason}")]
    InvalidToken {
        /// What is wrong with the token and what is allowed.
        reason: String,
    },

    /// A configuration field has a value the provider cannot work with.
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The name of the offending field, e.g. `ttl`.
        field: &'static str,
        /// Why the value is rejected and what range is accepted.
        reason: String,
    },

    /// The connection URL cannot be parsed or names an unsupported scheme.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store did not answer within the configured time.
    #[error(
        "{operation} timed out after {after:?}; raise `operation_timeout` (or `connect_timeout`) or check the store's latency"
    )]
    Timeout {
        /// Which operation was abandoned (`reserve`, `commit`, `release`, `connect`, ...).
        operation: &'static str,
        /// The time limit that expired.
        after: Duration,
    },

    /// The store could not be reached (connection refused, reset, or dropped).
    #[error("idempotency store unavailable: {cause}")]
    Unavailable {
        /// The underlying I/O or client error.
        #[source]
        cause: Cause,
    },

    /// The store refused the credentials or the command (authentication or ACL).
    #[error(
        "authentication or authorisation refused by the store: {message}; check the user, password and ACL in the URL"
    )]
    Auth {
        /// The store's own explanation.
        message: String,
    },

    /// Fewer replicas than `replica_acks` acknowledged a reservation within
    /// `replica_ack_timeout`; the reservation was released (fail closed).
    #[error(
        "only {acked} of the {wanted} replicas required by `replica_acks` acknowledged the reservation in time; it was released — check the replicas or raise `replica_ack_timeout`"
    )]
    NotReplicated {
        /// `replica_acks`.
        wanted: u32,
        /// How many acknowledged.
        acked: u32,
    },

    /// A `once` reservation's lease expired before its work finished, and the
    /// claim could not be committed. The work ran; another caller may also run
    /// it. Raise `lease` above the longest expected work duration.
    #[error(
        "the lease on token `{token}` expired before the work finished; raise `lease` above the work's duration"
    )]
    LeaseLost {
        /// The token whose lease was lost.
        token: String,
    },

    /// Any other error reported by the store.
    #[error("idempotency store error: {cause}")]
    Store {
        /// The store's error.
        #[source]
        cause: Cause,
    },
}

impl Error {
    /// Wraps a connection-level failure as [`Error::Unavailable`].
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable {
            cause: Arc::from(cause.into()),
        }
    }

    /// Wraps any other store failure as [`Error::Store`].
    pub fn store(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Store {
            cause: Arc::from(cause.into()),
        }
    }

    /// True for failures that may succeed when retried unchanged (timeouts and
    /// an unreachable store); false for input, configuration and credential
    /// errors, which need a change first.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Unavailable { .. } | Self::NotReplicated { .. }
        )
    }
}

/// Shorthand for `std::result::Result<T, outbox_redis::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
