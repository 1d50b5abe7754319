//! One rustls client configuration for every publisher that speaks TLS itself (s3s-syslog and
//! s3s-gelf over `tls://`, s3s-es over `https://`): the system's roots or a CA file, client
//! certificates, a server name, and (s3s-es `--insecure`) no verification at all. The crypto
//! provider is aws-lc-rs, the one the AWS SDK already builds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS settings (`tls://` only).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the URL's host).
    pub server_name: Option<String>,
    /// PEM files of the client certificate chain and its key (both or neither).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate at all (a test cluster's self-signed one).
    pub insecure: bool,
}

/// The CA certificates of a PEM file, as roots to trust; errors name `flag` and the file.
/// Shared with `s3s-es` (`--ca-cert`).
pub fn load_roots(flag: &str, path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(flag, path)? {
        roots.add(c).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The certificates of a PEM file (at least one).
fn load_certs(flag: &str, path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Build a rustls client configuration. `ca_flag` names the CA option in messages (`--tls-ca`,
/// s3s-es's `--ca-cert`).
pub fn client_config(opts: &TlsOptions, ca_flag: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if opts.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let roots = match &opts.ca {
            Some(path) => load_roots(ca_flag, path)?,
            None => {
                let mut roots = rustls::RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err(format!("no system CA certificates found: give {ca_flag} FILE"));
                }
                roots
            }
        };
        builder.with_root_certificates(roots)
    };
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("--tls-cert", cert)?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => format!("--tls-key {}: no private key in it", key.display()),
                e => format!("--tls-key {}: {e}", key.display()),
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => format!("--tls-key does not belong to --tls-cert {}", cert.display()),
                e => format!("--tls-cert {} with --tls-key: {e}", cert.display()),
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (`--insecure`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
