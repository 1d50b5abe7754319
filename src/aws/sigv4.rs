//! SigV4 for our own HTTP requests (`s3s-es --aws-sigv4`: Amazon OpenSearch Service `es`, and
//! OpenSearch Serverless `aoss`), with the `aws-sigv4` crate the SDK itself signs with.
//!
//! What is signed: the method, path, query, every header the request carries (but
//! `user-agent`, `authorization` and the others `aws-sigv4` leaves out), an explicit `host` header
//! set here exactly as hyper would set it, and the SHA-256 of the body as sent (so a gzip body is
//! signed compressed). `aoss` also gets the `x-amz-content-sha256` header, which OpenSearch
//! Serverless requires. Session tokens travel as `x-amz-security-token`.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::credentials::CachedCredentials;

/// The AWS service a request is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Amazon OpenSearch Service domains (and Elasticsearch domains): service name `es`.
    Es,
    /// Amazon OpenSearch Serverless collections: service name `aoss`.
    Aoss,
}

impl Service {
    /// The service name in the credential scope.
    pub fn name(self) -> &'static str {
        match self {
            Service::Es => "es",
            Service::Aoss => "aoss",
        }
    }
}

/// The `host` header hyper sends for `uri`: the host, and the port when it is not the scheme's.
pub fn host_header(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    Some(match uri.port_u16() {
        Some(p) if Some(p) != default => format!("{host}:{p}"),
        _ => host.to_string(),
    })
}

/// Sign `req` (whose body is `body`, as sent) at `time`: adds `host` (when missing),
/// `x-amz-date`, `x-amz-security-token`, `x-amz-content-sha256` (aoss) and `authorization`.
pub fn sign_request<B>(
    req: &mut http::Request<B>,
    body: &[u8],
    credentials: &Credentials,
    service: Service,
    region: &str,
    time: SystemTime,
) -> Result<(), String> {
    if !req.headers().contains_key(http::header::HOST) {
        let host = host_header(req.uri()).ok_or_else(|| format!("SigV4: no host in {}", req.uri()))?;
        let value = http::HeaderValue::from_str(&host).map_err(|e| format!("SigV4: host {host:?}: {e}"))?;
        req.headers_mut().insert(http::header::HOST, value);
    }
    let mut settings = SigningSettings::default();
    if service == Service::Aoss {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service.name())
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4: {e}"))?
        .into();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| Ok((k.as_str(), v.to_str().map_err(|_| format!("SigV4: header {k} is not ASCII"))?)))
        .collect::<Result<Vec<_>, String>>()?;
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(req.method().as_str(), uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("SigV4: {e}"))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| format!("SigV4: {e}"))?.into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

/// Signs requests with the current credentials of the standard chain.
#[derive(Debug, Clone)]
pub struct Signer {
    credentials: Arc<CachedCredentials>,
    service: Service,
    region: String,
}

impl Signer {
    /// A signer for `service` in `region` (else the standard chain's region).
    pub async fn from_standard_chain(service: Service, region: Option<String>) -> Result<Signer, String> {
        let (credentials, chain_region) = CachedCredentials::from_standard_chain().await?;
        let region = region.or(chain_region).ok_or_else(|| {
            "--aws-sigv4 needs a region: give --aws-region or set AWS_REGION (or a region in the AWS profile)".to_string()
        })?;
        // Fail now, not at the first request, when there are no credentials at all.
        credentials.get().await?;
        Ok(Signer { credentials: Arc::new(credentials), service, region })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sign `req` (body `body`, as sent) now.
    pub async fn sign<B>(&self, req: &mut http::Request<B>, body: &[u8]) -> Result<(), String> {
        let credentials = self.credentials.get().await?;
        sign_request(req, body, &credentials, self.service, &self.region, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn header<'a, B>(req: &'a http::Request<B>, name: &str) -> &'a str {
        req.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
    }

    /// AWS's SigV4 test suite, "get-vanilla": GET / to example.amazonaws.com, service "service".
    #[test]
    fn aws_test_suite_get_vanilla() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("service")
            .time(at(1_440_938_160)) // 2015-08-30T12:36:00Z
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers = [("host", "example.amazonaws.com")];
        let req =
            SignableRequest::new("GET", "https://example.amazonaws.com/", headers.into_iter(), SignableBody::Bytes(b"")).unwrap();
        let (_, signature) = sign(req, &params).unwrap().into_parts();
        assert_eq!(signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    }

    /// A gzip'd bulk request, signed as botocore's SigV4Auth signs it (the reference signatures
    /// were computed with botocore 1.x for these inputs; see scripts/sigv4_proxy.py).
    #[test]
    fn gzip_bulk_request_matches_botocore() {
        let body = hex("1f8b0800000000000203ab56cacc4b49ad50b2aaaeade5aa564a54b232ace50200f40c0fd015000000");
        let creds =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", Some("SESSION".into()), None, "t");
        let time = at(1_704_164_645); // 2024-01-02T03:04:05Z
        for (service, want) in [
            (
                Service::Es,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/eu-west-1/es/aws4_request, \
                 SignedHeaders=content-encoding;content-type;host;x-amz-date;x-amz-security-token, \
                 Signature=4470a06e2ca26a586a5dff5b0dde041600ae9edf96ba3278c256d67fc450f989",
            ),
            (
                Service::Aoss,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/eu-west-1/aoss/aws4_request, \
                 SignedHeaders=content-encoding;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, \
                 Signature=717475739c254d59f0b89c77ab4d64bdf139d5f30c890082dea8b0d5289c2dcf",
            ),
        ] {
            let mut req = http::Request::post("https://search-d.eu-west-1.es.amazonaws.com/_bulk")
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .header("user-agent", "s3s-es/test")
                .body(())
                .unwrap();
            sign_request(&mut req, &body, &creds, service, "eu-west-1", time).unwrap();
            assert_eq!(header(&req, "authorization"), want, "{service:?}");
            assert_eq!(header(&req, "host"), "search-d.eu-west-1.es.amazonaws.com");
            assert_eq!(header(&req, "x-amz-date"), "20240102T030405Z");
            assert_eq!(header(&req, "x-amz-security-token"), "SESSION");
            let sha = header(&req, "x-amz-content-sha256");
            match service {
                Service::Aoss => assert_eq!(sha, "8e29f624a1500439c0c120bd25379ebd48f200e968bf7ad6b80cab47266a1322"),
                Service::Es => assert_eq!(sha, ""),
            }
        }
    }

    #[test]
    fn host_headers_name_the_port_only_when_not_the_default() {
        let h = |u: &str| host_header(&u.parse().unwrap()).unwrap();
        assert_eq!(h("https://search.example:443/_bulk"), "search.example");
        assert_eq!(h("https://search.example:9200/_bulk"), "search.example:9200");
        assert_eq!(h("http://127.0.0.1:80/"), "127.0.0.1");
        assert_eq!(h("http://localhost:9200"), "localhost:9200");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
