//! Which servers the client trusts, and the address rule.
//!
//! Trusted: the public certificate authorities (webpki roots, for a server
//! with a certificate from a public CA), CA files IT handed out (`--ca`,
//! `CLINIC_CA_FILE`), and clinic CAs a person confirmed by fingerprint on
//! this machine (kept in `trusted-ca.pem` in the data directory). When a
//! server presents a chain that none of them vouch for, the chain's last
//! certificate (the clinic CA when the server sends its full chain, as
//! `clinic-server tls init` makes it) is remembered, so the front end can
//! show its fingerprint for the person to compare with the server's
//! printout and pin it ([`Trust::pin`]).
//!
//! Plain `http://` is allowed only to this computer (loopback): anywhere
//! else tokens and patient records would cross the network readable.

use crate::error::{ClientError, ClientResult};
use clinic_shared::fingerprint::Fingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file of CAs confirmed on this machine.
pub(crate) const PINNED_FILE: &str = "trusted-ca.pem";

/// A certificate a server presented that nothing here vouches for.
#[derive(Debug, Clone)]
pub(crate) struct Presented {
    /// The certificate to trust (the chain's last one).
    pub der: Vec<u8>,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
}

/// Checks a server address: `https://…`, or `http://` to this computer.
/// Returns it without a trailing slash.
pub(crate) fn check_server_url(url: &str) -> ClientResult<String> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        ClientError::Invalid(format!(
            "`{url}` is not a server address (it looks like https://clinic-server:8787)"
        ))
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(url.to_owned()),
        "http" if loopback => Ok(url.to_owned()),
        "http" => Err(ClientError::Invalid(format!(
            "plain http:// is only allowed to this computer: to {} the sign-in and the \
             patients' records would cross the network unencrypted. Use https:// (ask IT \
             for the server's address and the clinic CA)",
            parsed.host_str().unwrap_or("that server")
        ))),
        other => Err(ClientError::Invalid(format!(
            "`{other}:` addresses are not supported; use https://"
        ))),
    }
}

/// Reads every certificate of a PEM file.
fn certificates(path: &Path) -> ClientResult<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::Io {
        context: format!("reading the CA file {}", path.display()),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ClientError::Invalid(format!(
                "{} is not a PEM certificate file (it should start with -----BEGIN CERTIFICATE-----)",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ClientError::Invalid(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Untrusted certificates met, by server name.
type Seen = Arc<Mutex<HashMap<String, Presented>>>;

fn name_of(server_name: &ServerName<'_>) -> String {
    match server_name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// The verifier: the usual checks against the trusted roots, remembering
/// the chain of a server that fails them for want of a trusted issuer.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Seen,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if let Ok(mut seen) = self.seen.lock() {
            let name = name_of(server_name);
            match &verdict {
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                    let anchor = intermediates.last().unwrap_or(end_entity);
                    let presented = Presented {
                        der: anchor.as_ref().to_vec(),
                        fingerprint: Fingerprint::of_der(anchor.as_ref()),
                    };
                    seen.insert(name, presented);
                }
                _ => {
                    seen.remove(&name);
                }
            }
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the client trusts, and the last untrusted certificate it met.
pub(crate) struct Trust {
    ca_files: Vec<PathBuf>,
    pinned: Option<PathBuf>,
    seen: Seen,
}

impl Trust {
    /// Trust from CA files and the pinned file in `data_dir` (if given).
    pub(crate) fn new(ca_files: Vec<PathBuf>, data_dir: Option<&Path>) -> Trust {
        Trust {
            ca_files,
            pinned: data_dir.map(|d| d.join(PINNED_FILE)),
            seen: Arc::default(),
        }
    }

    /// A rustls configuration with every trusted root, as things stand now.
    pub(crate) fn client_config(&self) -> ClientResult<Arc<rustls::ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let pinned = self.pinned.iter().filter(|p| p.exists());
        for path in self.ca_files.iter().chain(pinned) {
            for cert in certificates(path)? {
                roots.add(cert).map_err(|_| {
                    ClientError::Invalid(format!(
                        "{} holds a certificate that cannot be used as a CA",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientError::Invalid(format!("no usable trusted certificates: {e}")))?;
        let verifier = Arc::new(Recording {
            inner,
            seen: self.seen.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Invalid(format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The untrusted certificate `server` (a base URL) presented when it
    /// was last refused, if it was refused for that.
    pub(crate) fn seen(&self, server: &str) -> Option<Presented> {
        let host = reqwest::Url::parse(server)
            .ok()?
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        self.seen.lock().ok()?.get(&host).cloned()
    }

    /// Trusts the certificate `server` presented when it was refused, if
    /// its fingerprint is the one the person confirmed. Returns false when
    /// it is not (then nothing is trusted).
    pub(crate) fn pin(&self, server: &str, confirmed: &Fingerprint) -> ClientResult<bool> {
        let Some(presented) = self.seen(server).filter(|p| &p.fingerprint == confirmed) else {
            return Ok(false);
        };
        let Some(path) = &self.pinned else {
            return Err(ClientError::Invalid(
                "this client keeps no confirmed certificates; pass --ca FILE".into(),
            ));
        };
        let pem = pem_of(&presented.der);
        let mut all = std::fs::read_to_string(path).unwrap_or_default();
        if !all.contains(&pem) {
            all.push_str(&pem);
            crate::files::write_private(path, all.as_bytes())?;
        }
        Ok(true)
    }
}

/// A certificate as PEM text.
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_computer() {
        assert!(check_server_url("https://clinic.example:8787/").is_ok());
        assert_eq!(
            check_server_url("http://127.0.0.1:8787/").unwrap(),
            "http://127.0.0.1:8787"
        );
        assert!(check_server_url("http://localhost:8787").is_ok());
        assert!(check_server_url("http://[::1]:8787").is_ok());
        let refused = check_server_url("http://192.168.1.20:8787").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("only allowed to this computer"),
            "{refused}"
        );
        assert!(check_server_url("http://clinic.example").is_err());
        assert!(check_server_url("ftp://clinic.example").is_err());
        assert!(check_server_url("not a url").is_err());
    }
}
