//! s3s-kafka's security flags (TLS, SASL, Amazon MSK IAM), mapped to librdkafka properties; the
//! MSK IAM token source; which properties are secrets (never shown); which errors are fatal.
//!
//! The flags are set after the defaults and before -F and -X, so a property given there wins
//! (`-X security.protocol=SASL_PLAINTEXT` to send SASL without TLS, for instance).
//! Secrets never need the command line: the SASL password comes from `--sasl-password-file` or
//! `S3S_KAFKA_SASL_PASSWORD` (or -F); -X with a secret works but is warned about, since every
//! user can read argv in `ps` and /proc.
//!
//! Test-only: `S3S_KAFKA_MSK_TOKEN_SECONDS` shortens the MSK IAM tokens' X-Amz-Expires (900 s) so
//! that a test can see them refreshed; it is not meant for production and not in --help.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::aws::credentials::CachedCredentials;
use crate::aws::msk_iam;
use crate::cli::UsageError;

/// TLS, SASL and Amazon MSK IAM flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// Connect over TLS (security.protocol=SSL, or SASL_SSL with SASL), checking the brokers'
    /// certificates against the system's CA certificates (or --tls-ca's). Implied by the other
    /// --tls-* flags, --sasl-mechanism and --aws-msk-iam.
    #[arg(long, help_heading = "Security")]
    pub tls: bool,

    /// CA certificates (PEM) to check the brokers' certificates against, instead of the
    /// system's (ssl.ca.location).
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for brokers that require one (ssl.certificate.location).
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "Security")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM, ssl.key.location).
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "Security")]
    pub tls_key: Option<PathBuf>,

    /// SASL mechanism (sasl.mechanisms); over TLS (SASL_SSL) unless -X security.protocol says
    /// otherwise. The password: --sasl-password-file or S3S_KAFKA_SASL_PASSWORD.
    #[arg(long, value_enum, ignore_case = true, value_name = "MECHANISM", help_heading = "Security")]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name (sasl.username), for --sasl-mechanism or a mechanism set with -F/-X.
    #[arg(long, value_name = "NAME", env = "S3S_KAFKA_SASL_USERNAME", help_heading = "Security")]
    pub sasl_username: Option<String>,

    /// Read the SASL password (sasl.password) from FILE (its first line); else
    /// S3S_KAFKA_SASL_PASSWORD.
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub sasl_password_file: Option<PathBuf>,

    /// Amazon MSK IAM access control: SASL/OAUTHBEARER over TLS, with tokens signed by the
    /// standard AWS credential chain (environment, profile, SSO, web identity, ECS or instance
    /// role) and signed again before they expire (every 15 minutes).
    #[arg(long, conflicts_with_all = ["sasl_mechanism", "sasl_password_file"], help_heading = "Security")]
    pub aws_msk_iam: bool,

    /// The AWS region of the MSK cluster (default: the standard chain's region, else the one
    /// in the brokers' host names).
    #[arg(long, value_name = "REGION", requires = "aws_msk_iam", help_heading = "Security")]
    pub aws_region: Option<String>,
}

/// SASL mechanisms a user may name (OAUTHBEARER comes with --aws-msk-iam).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    /// User name and password in the clear (use TLS).
    #[value(name = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256 (RFC 7677).
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512 (Amazon MSK, Confluent Platform, Redpanda...).
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn property(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The environment variable of the SASL password.
pub const PASSWORD_ENV: &str = "S3S_KAFKA_SASL_PASSWORD";
/// Test-only: the MSK IAM tokens' lifetime in seconds (see the module docs).
pub const TOKEN_SECONDS_ENV: &str = "S3S_KAFKA_MSK_TOKEN_SECONDS";

/// Read the first line of a secret file.
fn read_secret(flag: &str, path: &std::path::Path) -> Result<String, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{flag} {}: {e}", path.display())))?;
    let s = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if s.is_empty() {
        return Err(UsageError(format!("{flag} {}: empty", path.display())));
    }
    Ok(s)
}

/// The librdkafka properties the flags stand for, in order; `env_password` is
/// S3S_KAFKA_SASL_PASSWORD's value.
pub fn properties(args: &SecurityArgs, env_password: Option<String>) -> Result<Vec<(String, String)>, UsageError> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| p.push((k.to_string(), v));
    let sasl = args.sasl_mechanism.is_some() || args.aws_msk_iam;
    let tls = sasl || args.tls || args.tls_ca.is_some() || args.tls_cert.is_some();
    if tls {
        set("security.protocol", if sasl { "SASL_SSL" } else { "SSL" }.into());
    }
    let path = |p: &PathBuf| p.display().to_string();
    if let Some(ca) = &args.tls_ca {
        set("ssl.ca.location", path(ca));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        set("ssl.certificate.location", path(cert));
        set("ssl.key.location", path(key));
    }
    if let Some(m) = args.sasl_mechanism {
        set("sasl.mechanisms", m.property().into());
    }
    // The user name and password also serve a mechanism set with -F or -X.
    if let Some(user) = &args.sasl_username {
        set("sasl.username", user.clone());
    }
    let password = match &args.sasl_password_file {
        Some(f) => Some(read_secret("--sasl-password-file", f)?),
        None if !args.aws_msk_iam => env_password.filter(|p| !p.is_empty()),
        None => None,
    };
    if let Some(pw) = password {
        set("sasl.password", pw);
    }
    if args.aws_msk_iam {
        set("sasl.mechanisms", "OAUTHBEARER".into());
    }
    Ok(p)
}

/// Checks on the final configuration (after -F and -X).
pub fn check(args: &SecurityArgs, get: impl Fn(&str) -> Option<String>) -> Result<(), UsageError> {
    let mechanism = get("sasl.mechanisms").or_else(|| get("sasl.mechanism")).unwrap_or_default();
    let oauth = mechanism.eq_ignore_ascii_case("OAUTHBEARER");
    if args.aws_msk_iam && !oauth {
        return Err(UsageError(format!("--aws-msk-iam authenticates with OAUTHBEARER, but sasl.mechanisms is {mechanism}")));
    }
    if oauth && !args.aws_msk_iam && get("sasl.oauthbearer.method").is_none_or(|m| m.eq_ignore_ascii_case("default")) {
        return Err(UsageError(
            "sasl.mechanisms=OAUTHBEARER: s3s-kafka makes OAUTHBEARER tokens for Amazon MSK IAM only: give --aws-msk-iam".into(),
        ));
    }
    let needs_password = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].iter().any(|m| mechanism.eq_ignore_ascii_case(m));
    if needs_password && get("sasl.password").is_none() {
        return Err(UsageError(format!(
            "sasl.mechanisms={mechanism} needs a password: set {PASSWORD_ENV}, give --sasl-password-file, or sasl.password in -F"
        )));
    }
    if needs_password && get("sasl.username").is_none() {
        return Err(UsageError(format!("sasl.mechanisms={mechanism} needs a user name: --sasl-username")));
    }
    Ok(())
}

/// True for librdkafka properties whose values are secrets: never shown, warned about in argv.
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    p.contains("password")
        || p.contains("secret")
        || p.contains("token")
        || p == "ssl.key.pem"
        || p == "ssl_key"
        || p == "sasl.oauthbearer.config"
        || p == "ssl.keystore.location"
}

/// `value` as it may be shown for `property`.
pub fn shown<'a>(property: &str, value: &'a str) -> &'a str {
    if is_secret(property) { "(secret, not shown)" } else { value }
}

/// Warn about secrets given with -X (readable by every user in ps and /proc/PID/cmdline).
pub fn warn_secrets_in_argv(properties: &[String]) {
    for x in properties {
        if let Some((k, _)) = x.split_once('=')
            && is_secret(k)
        {
            tracing::warn!(
                "-X {k}=...: a secret on the command line can be read by every user (ps, /proc/PID/cmdline); \
                 use {PASSWORD_ENV}, --sasl-password-file or a -F file readable only by you"
            );
        }
    }
}

/// Errors after which retrying cannot help: the brokers refuse our credentials or we refuse
/// their certificates. s3s-kafka stops at the first one (nothing more is acknowledged; exit 1)
/// instead of retrying until message.timeout.ms.
pub fn is_fatal(code: rdkafka::error::RDKafkaErrorCode) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(code, C::Authentication | C::SaslAuthenticationFailed | C::SSL)
}

/// The first fatal error (see [`is_fatal`]), shared by librdkafka's callbacks and the publisher.
#[derive(Debug, Default)]
pub struct Fatal {
    raised: std::sync::atomic::AtomicBool,
    reason: std::sync::OnceLock<String>,
}

impl Fatal {
    /// Record `reason`; true the first time.
    pub fn raise(&self, reason: &str) -> bool {
        let first = self.reason.set(reason.to_string()).is_ok();
        self.raised.store(true, std::sync::atomic::Ordering::Release);
        first
    }

    /// Raised yet? (One atomic load: checked for every line.)
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.raised.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why, once raised.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

/// Hand librdkafka a token (or the reason there is none), for its OAUTHBEARER refresh event.
///
/// # Safety
/// `client` must be a live librdkafka client handle.
pub unsafe fn set_token(client: *mut rdkafka::bindings::rd_kafka_t, token: Result<rdkafka::client::OAuthToken, String>) {
    use rdkafka::bindings as rd;
    use std::ffi::CString;
    let failure = match token {
        Ok(t) => match (CString::new(t.token), CString::new(t.principal_name)) {
            (Ok(value), Ok(principal)) => {
                let mut err = [0 as std::ffi::c_char; 512];
                // SAFETY: live client, NUL-terminated strings and a buffer of the size given.
                let code = unsafe {
                    rd::rd_kafka_oauthbearer_set_token(
                        client,
                        value.as_ptr(),
                        t.lifetime_ms,
                        principal.as_ptr(),
                        std::ptr::null_mut(),
                        0,
                        err.as_mut_ptr(),
                        err.len(),
                    )
                };
                if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return;
                }
                // SAFETY: librdkafka wrote a NUL-terminated message into the buffer.
                let why = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
                format!("MSK IAM token refused by librdkafka: {why}")
            }
            _ => "MSK IAM token: a NUL byte".to_string(),
        },
        Err(e) => e,
    };
    tracing::error!("{failure}");
    let msg = CString::new(failure.replace('\0', " ")).unwrap_or_default();
    // SAFETY: live client, NUL-terminated message.
    unsafe { rd::rd_kafka_oauthbearer_set_token_failure(client, msg.as_ptr()) };
}

/// Signs Amazon MSK IAM tokens for librdkafka's OAUTHBEARER refresh.
pub struct MskIam {
    credentials: CachedCredentials,
    region: String,
    lifetime: Duration,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for MskIam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIam").field("region", &self.region).field("lifetime", &self.lifetime).finish()
    }
}

impl MskIam {
    /// The token source: credentials and region from the standard chain (the region from
    /// --aws-region first, then the chain, then the first broker's host name).
    pub fn new(args: &SecurityArgs, brokers: Option<&str>) -> anyhow::Result<MskIam> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (credentials, chain_region) = rt.block_on(CachedCredentials::from_standard_chain()).map_err(anyhow::Error::msg)?;
        let from_brokers = brokers.and_then(|b| b.split(',').find_map(|b| msk_iam::region_of_broker(b.trim())));
        let region = args
            .aws_region
            .clone()
            .or(chain_region)
            .or(from_brokers.map(str::to_string))
            .ok_or_else(|| UsageError("--aws-msk-iam needs a region: give --aws-region or set AWS_REGION".into()))?;
        let lifetime = match std::env::var(TOKEN_SECONDS_ENV) {
            Ok(s) => Duration::from_secs(s.parse().map_err(|_| UsageError(format!("{TOKEN_SECONDS_ENV}={s:?}: not seconds")))?),
            Err(_) => msk_iam::TOKEN_LIFETIME,
        };
        let source = MskIam { credentials, region, lifetime, rt };
        // No credentials at all: say so now, not at the first connection.
        source.rt.block_on(source.credentials.get()).map_err(|e| anyhow::anyhow!("--aws-msk-iam: {e}"))?;
        Ok(source)
    }

    /// A fresh token (called by librdkafka's refresh event, on the thread serving its queue).
    pub fn token(&self) -> Result<rdkafka::client::OAuthToken, String> {
        let credentials = self.rt.block_on(self.credentials.get())?;
        let t = msk_iam::token(&credentials, &self.region, SystemTime::now(), self.lifetime)?;
        let lifetime_ms = t.expires.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        tracing::debug!("signed an MSK IAM token for {} valid until {lifetime_ms} ms", self.region);
        Ok(rdkafka::client::OAuthToken { token: t.token, principal_name: "s3s-kafka".into(), lifetime_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        s: SecurityArgs,
    }

    fn parse(args: &[&str]) -> SecurityArgs {
        T::try_parse_from([&["t"], args].concat()).unwrap().s
    }

    fn props(args: &[&str], env: Option<&str>) -> Vec<(String, String)> {
        properties(&parse(args), env.map(str::to_string)).unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn flags_map_to_librdkafka_properties() {
        assert_eq!(props(&[], None), vec![]);
        assert_eq!(props(&[], Some("pw")), pairs(&[("sasl.password", "pw")]));
        assert_eq!(props(&["--tls"], None), pairs(&[("security.protocol", "SSL")]));
        assert_eq!(
            props(&["--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"], None),
            pairs(&[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", "ca.pem"),
                ("ssl.certificate.location", "c.pem"),
                ("ssl.key.location", "k.pem")
            ])
        );
        assert_eq!(
            props(&["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u"], Some("pw")),
            pairs(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "pw")
            ])
        );
        assert_eq!(
            props(&["--aws-msk-iam"], Some("ignored")),
            pairs(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "OAUTHBEARER")])
        );
    }

    #[test]
    fn the_password_file_wins_over_the_environment() {
        let dir = std::env::temp_dir().join(format!("s3s-security-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "from-file\r\nsecond line\n").unwrap();
        let p = props(
            &["--sasl-mechanism", "PLAIN", "--sasl-username", "u", "--sasl-password-file", f.to_str().unwrap()],
            Some("env"),
        );
        assert!(p.contains(&("sasl.password".into(), "from-file".into())), "{p:?}");
        std::fs::write(&f, "\n").unwrap();
        let e = properties(
            &parse(&["--sasl-mechanism", "PLAIN", "--sasl-username", "u", "--sasl-password-file", f.to_str().unwrap()]),
            None,
        );
        assert!(e.unwrap_err().0.contains("empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn usage_errors() {
        assert!(T::try_parse_from(["t", "--aws-msk-iam", "--sasl-mechanism", "PLAIN", "--sasl-username", "u"]).is_err());
        assert!(T::try_parse_from(["t", "--tls-cert", "c.pem"]).is_err());
        assert!(T::try_parse_from(["t", "--aws-region", "eu-west-1"]).is_err());
        let none = |_: &str| None::<String>;
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert!(check(&parse(&[]), none).is_ok());
        let e = check(&parse(&[]), get(&[("sasl.mechanisms", "SCRAM-SHA-256"), ("sasl.username", "u")])).unwrap_err();
        assert!(e.0.contains(PASSWORD_ENV), "{e}");
        let e = check(&parse(&[]), get(&[("sasl.mechanisms", "OAUTHBEARER")])).unwrap_err();
        assert!(e.0.contains("--aws-msk-iam"), "{e}");
        let e = check(&parse(&["--aws-msk-iam"]), get(&[("sasl.mechanisms", "PLAIN")])).unwrap_err();
        assert!(e.0.contains("OAUTHBEARER"), "{e}");
        assert!(check(&parse(&["--aws-msk-iam"]), get(&[("sasl.mechanisms", "OAUTHBEARER")])).is_ok());
    }

    #[test]
    fn secrets_are_recognised() {
        for p in ["sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"] {
            assert!(is_secret(p), "{p}");
            assert_eq!(shown(p, "hunter2"), "(secret, not shown)");
        }
        for p in ["sasl.username", "ssl.ca.location", "linger.ms", "bootstrap.servers"] {
            assert!(!is_secret(p), "{p}");
        }
    }
}
