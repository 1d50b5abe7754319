//! Amazon MSK IAM authentication tokens, for SASL/OAUTHBEARER (`s3s-kafka --aws-msk-iam`).
//!
//! The token is what AWS's own signers (`aws-msk-iam-sasl-signer-*`) make: the base64url (no
//! padding) of a SigV4-presigned `GET https://kafka.<region>.amazonaws.com/?Action=
//! kafka-cluster%3AConnect` (service `kafka-cluster`, only `host` signed, the SHA-256 of an empty
//! body, `X-Amz-Expires` 900, `X-Amz-Security-Token` when the credentials have one), with a
//! `User-Agent` parameter appended after signing. Its lifetime is the signing time plus
//! X-Amz-Expires, and never beyond the expiry of the credentials that signed it.
//!
//! Presigned with the `aws-sigv4` crate (already in the tree through aws-config). The
//! `aws-msk-iam-sasl-signer` crate does the same, but brings STS and a second set of AWS clients.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// X-Amz-Expires of the tokens, as AWS's signers set it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The `User-Agent` parameter of our tokens.
pub const USER_AGENT: &str = concat!("s3s-kafka/", env!("CARGO_PKG_VERSION"));

/// A signed token and when it stops being valid.
pub struct Token {
    /// The bearer token (base64url of the presigned URL). A credential: never log it.
    pub token: String,
    /// When it expires.
    pub expires: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("token", &"** redacted **").field("expires", &self.expires).finish()
    }
}

/// Percent-encode a query value as SigV4 does (everything but `A-Za-z0-9-_.~`).
fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The presigned URL (without the User-Agent parameter) for `region`, signed at `time`.
pub fn presigned_url(credentials: &Credentials, region: &str, time: SystemTime, lifetime: Duration) -> Result<String, String> {
    let host = format!("kafka.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(lifetime);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("MSK IAM token: {e}"))?
        .into();
    let request = SignableRequest::new("GET", url.as_str(), [("host", host.as_str())].into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("MSK IAM token: {e}"))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| format!("MSK IAM token: {e}"))?.into_parts();
    let mut out = url;
    // In the order AWS's signers write them (any order verifies: the server sorts them).
    let mut query: Vec<_> = instructions.params().to_vec();
    let rank = |k: &str| {
        ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Security-Token"]
            .iter()
            .position(|p| *p == k)
            .unwrap_or(6)
    };
    query.sort_by_key(|(k, _)| rank(k));
    for (k, v) in query {
        out.push('&');
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(&v));
    }
    Ok(out)
}

/// A token for `region` signed with `credentials` at `time`, valid for `lifetime` (900 s but in
/// tests) or until the credentials expire, whichever comes first.
pub fn token(credentials: &Credentials, region: &str, time: SystemTime, lifetime: Duration) -> Result<Token, String> {
    let mut url = presigned_url(credentials, region, time, lifetime)?;
    url.push_str("&User-Agent=");
    url.push_str(&encode(USER_AGENT));
    let mut expires = time + lifetime;
    if let Some(x) = credentials.expiry() {
        expires = expires.min(x);
    }
    Ok(Token { token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url), expires })
}

/// The region of an MSK broker address (`b-1.name.abc123.c2.kafka.eu-west-1.amazonaws.com:9098`),
/// if it is one.
pub fn region_of_broker(broker: &str) -> Option<&str> {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let rest = host.strip_suffix(".amazonaws.com")?;
    let (before, region) = rest.rsplit_once('.')?;
    (before.ends_with(".kafka") || before.ends_with(".kafka-serverless")).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645) // 2024-01-02T03:04:05Z
    }

    /// The reference URLs were made with botocore's SigV4QueryAuth as aws-msk-iam-sasl-signer-python
    /// uses it (same credentials, region and time).
    #[test]
    fn presigned_urls_match_aws_signer() {
        let creds = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "test");
        assert_eq!(
            presigned_url(&creds, "eu-west-1", at(), TOKEN_LIFETIME).unwrap(),
            "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20240102T030405Z\
             &X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=8e46bd6787e09b7c58faaa04d36154378d4dfcda99f072994912d5e4d9a64b8e"
        );
        let creds = Credentials::new("AKIDEXAMPLE", SECRET, Some("FQoGZXIvYXdzEXAMPLE/token+with=chars".into()), None, "test");
        assert_eq!(
            presigned_url(&creds, "eu-west-1", at(), TOKEN_LIFETIME).unwrap(),
            "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20240102T030405Z\
             &X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE%2Ftoken%2Bwith%3Dchars\
             &X-Amz-Signature=eff17ba7616c89202fe0fd5eb26a67c316833c90aad24a6c2ab5708cded007e0"
        );
    }

    #[test]
    fn tokens_are_unpadded_base64url_of_the_url_with_a_user_agent() {
        let creds = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "test");
        let t = token(&creds, "eu-west-1", at(), TOKEN_LIFETIME).unwrap();
        assert!(!t.token.contains('=') && !t.token.contains('+') && !t.token.contains('/'));
        let url = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t.token).unwrap()).unwrap();
        let signed = presigned_url(&creds, "eu-west-1", at(), TOKEN_LIFETIME).unwrap();
        assert_eq!(url, format!("{signed}&User-Agent=s3s-kafka%2F{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(t.expires, at() + TOKEN_LIFETIME);
        assert!(!format!("{t:?}").contains(&t.token));
    }

    #[test]
    fn tokens_end_when_their_credentials_do() {
        let soon = at() + Duration::from_secs(60);
        let creds = Credentials::new("AKIDEXAMPLE", SECRET, Some("T".into()), Some(soon), "test");
        assert_eq!(token(&creds, "us-east-1", at(), TOKEN_LIFETIME).unwrap().expires, soon);
        let short = Duration::from_secs(10);
        assert_eq!(token(&creds, "us-east-1", at(), short).unwrap().expires, at() + short);
    }

    #[test]
    fn regions_of_msk_brokers() {
        assert_eq!(region_of_broker("b-1.cdn.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"), Some("eu-west-1"));
        assert_eq!(region_of_broker("boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com:9098"), Some("us-east-2"));
        assert_eq!(region_of_broker("kafka.example.com:9092"), None);
        assert_eq!(region_of_broker("localhost:9092"), None);
    }
}
