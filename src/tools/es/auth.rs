//! Where and as whom s3s-es connects: the node URLs (no credentials in them) and the
//! Authorization header from the secrets given by file or environment, never by argv.

use std::path::Path;

use base64::Engine as _;
use http::HeaderValue;

use super::Args;
use crate::cli::UsageError;

/// Read the first line of a secret file.
fn read_secret(flag: &str, path: &Path) -> Result<String, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{flag} {}: {e}", path.display())))?;
    let s = text.lines().next().unwrap_or("").trim().to_string();
    if s.is_empty() {
        return Err(UsageError(format!("{flag} {}: empty", path.display())));
    }
    Ok(s)
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The Authorization header from --user/--*-file and the S3S_ES_* secrets (at most one kind).
pub(super) fn auth_header(args: &Args) -> Result<Option<HeaderValue>, UsageError> {
    let api_key = match &args.api_key_file {
        Some(p) => Some(read_secret("--api-key-file", p)?),
        None => env_secret("S3S_ES_API_KEY"),
    };
    let bearer = match &args.bearer_token_file {
        Some(p) => Some(read_secret("--bearer-token-file", p)?),
        None => env_secret("S3S_ES_BEARER_TOKEN"),
    };
    let b64 = &base64::engine::general_purpose::STANDARD;
    let basic = match &args.user {
        Some(user) => {
            let password = match &args.password_file {
                Some(p) => read_secret("--password-file", p)?,
                None => env_secret("S3S_ES_PASSWORD")
                    .ok_or_else(|| UsageError("--user needs a password: set S3S_ES_PASSWORD or give --password-file".into()))?,
            };
            Some(format!("Basic {}", b64.encode(format!("{user}:{password}"))))
        }
        None if args.password_file.is_some() => return Err(UsageError("--password-file needs --user".into())),
        None => None,
    };
    let api_key = api_key.map(|k| if k.contains(':') { format!("ApiKey {}", b64.encode(&k)) } else { format!("ApiKey {k}") });
    let bearer = bearer.map(|t| format!("Bearer {t}"));
    let given: Vec<String> = [basic, api_key, bearer].into_iter().flatten().collect();
    match given.len() {
        0 => Ok(None),
        1 => {
            let mut v = HeaderValue::from_str(&given[0])
                .map_err(|_| UsageError("credentials contain characters not allowed in a header".into()))?;
            v.set_sensitive(true);
            Ok(Some(v))
        }
        _ => Err(UsageError("more than one kind of credentials (user/password, API key, bearer token): give one".into())),
    }
}

/// `url` with any `user:password@` replaced by `REDACTED@`, for messages (stderr, runs.log).
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => std::borrow::Cow::Owned(format!("{}REDACTED{}", &url[..start], &url[start + at..])),
        None => std::borrow::Cow::Borrowed(url),
    }
}

/// Credentials sent over plain http:// to a host other than this one: a warning (anyone on the
/// path can read them; a loopback address is taken as a local proxy or a test).
pub(super) fn warn_cleartext_credentials(tool: &str, endpoints: &[String], has_auth: bool) {
    if !has_auth {
        return;
    }
    for e in endpoints {
        let Ok(uri) = e.parse::<http::Uri>() else { continue };
        let local = uri.host().is_some_and(|h| {
            h == "localhost" || h == "[::1]" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        });
        if uri.scheme_str() == Some("http") && !local {
            eprintln!(
                "{tool}: warning: credentials are sent unencrypted to {} (http://): anyone on the path can read them; use https://",
                redact_url(e)
            );
        }
    }
}

/// `<url>/_bulk` for each --url, checked. A URL in an error message never shows its
/// `user:password@` part (see [`redact_url`]).
pub(super) fn endpoints(urls: &[String]) -> Result<Vec<String>, UsageError> {
    if urls.is_empty() {
        return Err(UsageError("no server: give --url URL or set S3S_ES_URL (or use --dry-run)".into()));
    }
    urls.iter()
        .map(|u| {
            let u = u.trim().trim_end_matches('/');
            let shown = redact_url(u);
            let u_ = u;
            let u = &*shown;
            let uri: http::Uri = u_.parse().map_err(|e| UsageError(format!("--url {u:?}: {e}")))?;
            match uri.scheme_str() {
                Some("http" | "https") => {}
                _ => return Err(UsageError(format!("--url {u:?}: wants http:// or https://"))),
            }
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return Err(UsageError(format!(
                    "--url {u:?}: no credentials in URLs (use --user with S3S_ES_PASSWORD or --password-file)"
                )));
            }
            if uri.query().is_some() {
                return Err(UsageError(format!("--url {u:?}: no query string, please")));
            }
            Ok(format!("{u_}/_bulk"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_credentials() {
        assert_eq!(endpoints(&["http://h:9200/".into()]).unwrap(), ["http://h:9200/_bulk"]);
        assert_eq!(endpoints(&["https://h/es".into()]).unwrap(), ["https://h/es/_bulk"]);
        let e = endpoints(&["http://admin:S3CR3T@h:9200".into()]).unwrap_err().to_string();
        assert!(!e.contains("S3CR3T") && e.contains("REDACTED@h:9200"), "{e}");
        let e = endpoints(&["http://admin:S3CR3T@h:9200/ x".into()]).unwrap_err().to_string();
        assert!(!e.contains("S3CR3T"), "{e}");
        assert_eq!(redact_url("https://u:p@w@h/p@x?q=a@b"), "https://REDACTED@h/p@x?q=a@b");
        assert_eq!(redact_url("http://h:9200/x"), "http://h:9200/x");
        assert!(endpoints(&["ftp://h".into()]).is_err());
        assert!(endpoints(&[]).is_err());
    }
}
