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
        Some("redis-cluster") if cfg!(feature = "cluster") => Ok(()),
        Some("redis-cluster") => Err(invalid(
            "redis-cluster:// needs the `cluster` feature of outbox-redis",
        )),
        Some("rediss") if cfg!(feature = "tls-rustls") => Ok(()),
        Some("rediss") => Err(invalid(
            "rediss:// needs TLS; enable the `tls-rustls` feature of outbox-redis",
        )),
        _ => Err(invalid(
            "expected redis://[user:password@]host:port[/db], rediss://..., or redis-cluster://[user:password@]host:port,host:port,...",
        )),
    }
}

/// A parsed `redis-cluster://[user:password@]host:port,host:port,...` URL.
#[cfg(feature = "cluster")]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClusterUrl {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// `host:port` of each seed node.
    pub(crate) nodes: Vec<String>,
}

/// Parses a cluster URL, or `None` when `url` is not one.
///
/// # Errors
///
/// [`Error::InvalidUrl`] when a node is not `host:port`.
#[cfg(feature = "cluster")]
pub(crate) fn cluster_url(url: &str) -> Result<Option<ClusterUrl>> {
    let Some(rest) = url.strip_prefix("redis-cluster://") else {
        return Ok(None);
    };
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, rest),
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((user, pass)) => (
            (!user.is_empty()).then(|| user.to_owned()),
            (!pass.is_empty()).then(|| pass.to_owned()),
        ),
        None => (None, None),
    };
    let mut nodes = Vec::new();
    for node in hosts.trim_end_matches('/').split(',') {
        match node.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                nodes.push(node.to_owned());
            }
            _ => return Err(invalid(format!("node `{node}` is not host:port"))),
        }
    }
    Ok(Some(ClusterUrl {
        username,
        password,
        nodes,
    }))
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

    #[cfg(feature = "cluster")]
    #[test]
    fn cluster_urls_parse() {
        let parsed = super::cluster_url("redis-cluster://u:p@127.0.0.1:7000,127.0.0.1:7001")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.username.as_deref(), Some("u"));
        assert_eq!(parsed.password.as_deref(), Some("p"));
        assert_eq!(parsed.nodes, vec!["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert!(super::cluster_url("redis://h:1").unwrap().is_none());
        assert!(super::cluster_url("redis-cluster://h:x").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://u@h/x@y"), "redis://u@h/x@y");
    }
}
