//! TLS set-up shared by the network sources and the `send` client: server configs from PEM
//! files or a generated self-signed certificate, optional client-certificate (mTLS)
//! verification, certificate fingerprints, and the three ways a client can trust a server
//! (system roots or a CA file, a pinned SHA-256 fingerprint, or anything at all).
//!
//! One TLS stack: rustls with the aws-lc-rs provider (the AWS SDK brings the same).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its private key.
pub struct Identity {
    /// Leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("reading certificates from {}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("reading the private key from {}: {e}", key.display()))?;
        Ok(Identity { certs, key })
    }

    /// A fresh self-signed certificate for `names` (DNS names or IP addresses), for development.
    pub fn self_signed(names: &[String]) -> Result<Identity, String> {
        let ck = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| format!("generating a self-signed certificate: {e}"))?;
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .map_err(|e| format!("encoding the generated key: {e}"))?;
        Ok(Identity {
            certs: vec![ck.cert.der().clone()],
            key,
        })
    }

    /// The SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> String {
        self.certs
            .first()
            .map_or_else(String::new, |c| fingerprint(c))
    }
}

/// SHA-256 of a certificate's DER bytes, as lowercase hex (what `--fingerprint` takes).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    sha2::Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Normalizes a fingerprint as users write it (`AB:CD:...`, `abcd...`) to lowercase hex, or
/// says what is wrong with it.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ));
    }
    Ok(hex)
}

/// Reads the CA certificates of a PEM file into a root store.
pub fn roots_from_pem(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading CA certificates from {}: {e}", path.display()))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no CA certificate in {}", path.display()));
    }
    Ok(roots)
}

/// A rustls server config presenting `identity`, offering `alpn`, and — with `client_ca` —
/// requiring client certificates signed by one of its CAs.
pub fn server_config(
    identity: Identity,
    alpn: &[&[u8]],
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(roots_from_pem(ca)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| {
                        format!("client certificate verifier from {}: {e}", ca.display())
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(identity.certs, identity.key)
        .map_err(|e| format!("the certificate and key do not make a usable identity: {e}"))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// How a client decides to trust a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's root certificates (or the CAs of a PEM file).
    Roots(Option<PathBuf>),
    /// Exactly the certificate with this SHA-256 fingerprint (lowercase hex); names and dates
    /// are not checked.
    Pinned(String),
    /// Anything (development only).
    Insecure,
}

/// Checks the server's certificate against a pinned fingerprint (or not at all); handshake
/// signatures are still verified, so the peer does hold the certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) => {
                let got = fingerprint(end_entity);
                if &got == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the server's certificate has fingerprint {got}, not the pinned {pin}"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config trusting servers per `trust`, offering `alpn`, and presenting
/// `identity` when given (for servers that require client certificates).
pub fn client_config(
    trust: &Trust,
    alpn: &[&[u8]],
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match trust {
        Trust::Roots(ca) => {
            let roots = match ca {
                Some(path) => roots_from_pem(path)?,
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let mut roots = rustls::RootCertStore::empty();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        return Err(
                            "no usable system root certificates (install ca-certificates, or \
                             pass --ca FILE or --fingerprint HEX)"
                                .into(),
                        );
                    }
                    roots
                }
            };
            builder.with_root_certificates(roots)
        }
        Trust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: Some(pin.clone()),
                provider: provider(),
            })),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: None,
                provider: provider(),
            })),
    };
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs, id.key)
            .map_err(|e| format!("the client certificate and key are unusable: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized_and_checked() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), hex);
        assert_eq!(parse_fingerprint(&hex).unwrap(), hex);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn self_signed_identities_make_server_and_client_configs() {
        let id = Identity::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 64);
        assert_eq!(parse_fingerprint(&fp).unwrap(), fp);
        let server = server_config(id, &[b"edge-router/1"], None).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"edge-router/1".to_vec()]);
        let client = client_config(&Trust::Pinned(fp), &[b"x"], None).unwrap();
        assert_eq!(client.alpn_protocols, vec![b"x".to_vec()]);
        assert!(
            server_config(
                Identity::self_signed(&["a".into()]).unwrap(),
                &[],
                Some(Path::new("/nonexistent/ca.pem"))
            )
            .is_err()
        );
    }
}
