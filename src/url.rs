//! Connection URLs: the schemes the Redis backends accept, and redaction of
//! passwords for messages.

use crate::error::{Error, Result};

/// Checks that `url` names a scheme the Redis backends speak, before any
/// client library sees it (some accept any scheme and would connect anyway).
///
/// # Errors
///
/// [`Error::InvalidUrl`] naming the accepted schemes, or the feature that
/// `rediss://` needs.
pub(crate) fn check_scheme(url: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("redis") => Ok(()),
        Some("rediss") if cfg!(feature = "tls-rustls") => Ok(()),
        Some("rediss") => Err(invalid(
            "rediss:// needs TLS; enable the `tls-rustls` feature of outbox-redis",
        )),
        _ => Err(invalid(
            "expected redis://[user:password@]host:port[/db] or rediss://...",
        )),
    }
}

/// `url` with the password (if any) replaced by `***`, fit for error
/// messages and logs.
#[must_use]
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &userinfo[..colon],
        &url[scheme_end + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://u@h/x@y"), "redis://u@h/x@y");
    }
}
