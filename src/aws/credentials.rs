//! AWS credentials for signing our own requests (SigV4 to OpenSearch, MSK IAM tokens): the
//! standard chain of `aws-config` (environment, profiles, SSO, web identity, ECS and instance
//! roles, credential_process), cached and fetched again before they expire.
//!
//! The SDK's clients cache credentials in their own identity cache, which is tied to the SDK's
//! request pipeline; requests we sign ourselves get this small cache instead, with the same rule:
//! credentials with an expiry are fetched again 5 minutes before it, credentials without one every
//! 15 minutes (a profile file or `credential_process` may have changed). A failed refresh keeps
//! the old credentials while they are still valid (warned once per failure) and is tried again on
//! the next use.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Fetch again this long before the credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry are fetched again after this long.
const REFRESH_UNEXPIRING: Duration = Duration::from_secs(15 * 60);

/// Credentials of the standard chain, cached until shortly before they expire.
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    current: tokio::sync::Mutex<Option<(Credentials, SystemTime)>>,
}

impl std::fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedCredentials")
    }
}

/// When credentials fetched at `now` should be fetched again.
pub fn refresh_at(credentials: &Credentials, now: SystemTime) -> SystemTime {
    match credentials.expiry() {
        // Short-lived credentials: at least halfway through what is left.
        Some(expiry) => {
            let left = expiry.duration_since(now).unwrap_or_default();
            now + left.saturating_sub(REFRESH_BEFORE_EXPIRY).max(left / 2)
        }
        None => now + REFRESH_UNEXPIRING,
    }
}

impl CachedCredentials {
    /// A cache over `provider`.
    pub fn new(provider: SharedCredentialsProvider) -> CachedCredentials {
        CachedCredentials { provider, current: tokio::sync::Mutex::new(None) }
    }

    /// The credentials provider of the standard chain and the region it found (if any).
    pub async fn from_standard_chain() -> Result<(CachedCredentials, Option<String>), String> {
        let config = super::sdk_config().await;
        let region = config.region().map(|r| r.to_string()).filter(|r| !r.is_empty());
        let provider = config
            .credentials_provider()
            .ok_or_else(|| "no AWS credentials provider (the standard chain found none)".to_string())?;
        Ok((CachedCredentials::new(provider), region))
    }

    /// Current credentials: cached, or fetched (again) from the provider.
    pub async fn get(&self) -> Result<Credentials, String> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some((credentials, at)) = &*current
            && now < *at
        {
            return Ok(credentials.clone());
        }
        match self.provider.provide_credentials().await {
            Ok(fresh) => {
                *current = Some((fresh.clone(), refresh_at(&fresh, now)));
                Ok(fresh)
            }
            Err(e) => {
                let why = format!("AWS credentials: {}", aws_sdk_sqs::error::DisplayErrorContext(&e));
                match &*current {
                    Some((old, _)) if old.expiry().is_none_or(|x| x > now + Duration::from_secs(10)) => {
                        tracing::warn!("{why} (still using the previous ones)");
                        Ok(old.clone())
                    }
                    _ => Err(why),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hour = Credentials::new("AKID", "SECRET", Some("T".into()), Some(now + Duration::from_secs(3600)), "test");
        assert_eq!(refresh_at(&hour, now), now + Duration::from_secs(3300));
        // Little left: halfway.
        let short = Credentials::new("AKID", "SECRET", None, Some(now + Duration::from_secs(120)), "test");
        assert_eq!(refresh_at(&short, now), now + Duration::from_secs(60));
        let expired = Credentials::new("AKID", "SECRET", None, Some(now - Duration::from_secs(1)), "test");
        assert_eq!(refresh_at(&expired, now), now);
        let forever = Credentials::new("AKID", "SECRET", None, None, "test");
        assert_eq!(refresh_at(&forever, now), now + REFRESH_UNEXPIRING);
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let c = Credentials::new("AKIDSHOWN", "the-secret-key", Some("the-session-token".into()), None, "test");
        let shown = format!("{c:?}");
        assert!(!shown.contains("the-secret-key") && !shown.contains("the-session-token"), "{shown}");
    }
}
