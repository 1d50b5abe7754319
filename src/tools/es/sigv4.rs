//! `s3s-es --aws-sigv4`: every request signed for Amazon OpenSearch Service (`es`) or OpenSearch
//! Serverless (`aoss`), with the credentials of the standard AWS chain (see `crate::aws`).

use crate::aws::sigv4::{Service, Signer};
use crate::cli::UsageError;

/// The SigV4 flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SigV4Args {
    /// Sign every request with AWS SigV4 for SERVICE: es (Amazon OpenSearch Service domains,
    /// the default) or aoss (OpenSearch Serverless). Credentials come from the standard AWS chain
    /// (environment, profile, SSO, web identity, ECS or instance role) and are fetched again
    /// before they expire; gzip bodies are signed as sent. Not with --user or the API key or
    /// bearer token settings.
    #[arg(long, value_enum, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "es")]
    pub aws_sigv4: Option<Service>,

    /// The AWS region to sign for (default: the standard chain's, e.g. AWS_REGION).
    #[arg(long, value_name = "REGION", requires = "aws_sigv4")]
    pub aws_region: Option<String>,
}

impl SigV4Args {
    /// Refuse another kind of credentials with SigV4 (both would want the Authorization header).
    pub fn check(&self, other_auth: bool) -> Result<(), UsageError> {
        if self.aws_sigv4.is_some() && other_auth {
            return Err(UsageError(
                "--aws-sigv4 signs the Authorization header: not with --user, an API key or a bearer token".into(),
            ));
        }
        Ok(())
    }

    /// The signer, when asked for: call on the runtime that sends the requests (the credential
    /// providers' HTTP clients belong to it).
    pub async fn signer(&self) -> anyhow::Result<Option<Signer>> {
        let Some(service) = self.aws_sigv4 else { return Ok(None) };
        let signer = Signer::from_standard_chain(service, self.aws_region.clone())
            .await
            .map_err(|e| anyhow::anyhow!("--aws-sigv4: {e}"))?;
        tracing::info!("signing requests with SigV4 for {} in {}", service.name(), signer.region());
        Ok(Some(signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        s: SigV4Args,
        #[arg(long)]
        gzip: bool,
    }

    #[test]
    fn the_service_defaults_to_es() {
        let t = T::try_parse_from(["t", "--aws-sigv4", "--gzip"]).unwrap();
        assert_eq!(t.s.aws_sigv4, Some(Service::Es));
        assert!(t.gzip);
        let t = T::try_parse_from(["t", "--aws-sigv4", "aoss", "--aws-region", "eu-west-1"]).unwrap();
        assert_eq!((t.s.aws_sigv4, t.s.aws_region.as_deref()), (Some(Service::Aoss), Some("eu-west-1")));
        assert!(T::try_parse_from(["t", "--aws-sigv4", "s3"]).is_err());
        assert!(T::try_parse_from(["t", "--aws-region", "eu-west-1"]).is_err());
        assert!(t.s.check(true).is_err() && t.s.check(false).is_ok());
        assert!(T::try_parse_from(["t"]).unwrap().s.check(true).is_ok());
    }
}
