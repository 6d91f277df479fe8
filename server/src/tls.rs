//! TLS: the server's certificate and key loaded into a rustls acceptor, the
//! handshake of each accepted connection ([`wrap`]), and the clinic CA
//! tooling behind `clinic-server tls init|show|renew`.
//!
//! A clinic without its own PKI runs `tls init` once: it makes a clinic CA
//! (10 years) and a server certificate signed by it (2 years) in
//! `<data-dir>/tls/`, and prints the CA's fingerprint. IT copies `ca.pem` to
//! every desk (or the person at the desk compares the fingerprint on first
//! sign-in). `serve` then uses those files without further flags. A clinic
//! with its own certificate passes `--tls-cert`/`--tls-key` instead.
//!
//! Keys are ECDSA P-256 (what rcgen makes by default and every TLS client
//! takes). The CA may only sign end-entity certificates (path length 0), and
//! the server certificate is for server authentication only. Every file is
//! written to a temporary name with mode 0600 and renamed into place, so a
//! crash never leaves half a key behind.

use chrono::{DateTime, Utc};
use clinic_shared::fingerprint::Fingerprint;
use clinic_shared::protocol::{ErrorBody, ErrorCode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// How long the clinic CA is valid.
pub const CA_VALID_DAYS: i64 = 3650;
/// How long a server certificate is valid.
pub const SERVER_VALID_DAYS: i64 = 730;
/// Certificates start this long before "now", so a desk whose clock is a
/// little behind does not see a certificate from the future.
const BACKDATE_SECONDS: i64 = 24 * 3600;

/// A TLS setup problem. None of these go away by retrying: the files or
/// the flags must change.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or holds no certificate.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key rustls can use.
    #[error(
        "{} holds no PEM private key (PKCS#8 `BEGIN PRIVATE KEY`, PKCS#1 `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file is malformed.
    #[error("{}: malformed PEM: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A certificate does not parse as X.509.
    #[error("{}: not a readable X.509 certificate", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate and key (for instance, the key does
    /// not belong to the certificate, or its algorithm is unsupported).
    #[error("the certificate and key cannot be used for TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// `tls init` without `--force` where a setup already exists.
    #[error(
        "{} already holds a TLS setup; `tls show` prints it, `tls renew` re-issues the server certificate from the same CA, and `tls init --force` replaces everything (desks that trust the old CA will then refuse the server)",
        dir.display()
    )]
    Exists {
        /// The TLS directory.
        dir: PathBuf,
    },
    /// No setup where one is needed.
    #[error("no TLS setup in {}: run `clinic-server tls init` first", dir.display())]
    Missing {
        /// The TLS directory.
        dir: PathBuf,
    },
    /// A name given for the certificate is not a valid DNS name.
    #[error("--hostname `{name}` is not a DNS name (letters, digits, `-` and `.`; `*.` may lead)")]
    BadHostname {
        /// The name as given.
        name: String,
    },
    /// The clock is so far off that no certificate dates can be made.
    #[error("the system clock is out of the range certificates can carry")]
    BadTime,
    /// rcgen could not make or read a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

impl TlsError {
    /// Whether trying the same thing again can help (never: the files or
    /// flags must change first).
    pub fn retryable(&self) -> bool {
        false
    }
}

/// The files of a clinic TLS setup in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// `<data-dir>/tls`.
    pub dir: PathBuf,
    /// The clinic CA certificate (`ca.pem`): the file desks trust.
    pub ca_cert: PathBuf,
    /// The CA's private key (`ca-key.pem`); only `tls renew` needs it.
    pub ca_key: PathBuf,
    /// The server certificate (`server.pem`).
    pub server_cert: PathBuf,
    /// The server's private key (`server-key.pem`).
    pub server_key: PathBuf,
}

impl TlsPaths {
    /// The setup's files under `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        TlsPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            dir,
        }
    }

    /// Whether `serve` can use this setup (server certificate and key exist).
    pub fn has_server_identity(&self) -> bool {
        self.server_cert.exists() && self.server_key.exists()
    }

    fn any_exists(&self) -> bool {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
        ]
        .iter()
        .any(|p| p.exists())
    }
}

/// What `tls init|show|renew` report.
#[derive(Debug, Clone)]
pub struct TlsSummary {
    /// The CA certificate file, when there is one (absent for a brought
    /// certificate).
    pub ca_cert: PathBuf,
    /// The CA certificate's fingerprint.
    pub ca_fingerprint: Fingerprint,
    /// The server certificate file.
    pub server_cert: PathBuf,
    /// When the server certificate stops being valid.
    pub server_not_after: DateTime<Utc>,
    /// The names and addresses the server certificate is valid for.
    pub server_names: Vec<String>,
}

impl TlsSummary {
    /// The lines `tls init|show|renew` print: where the CA is, its
    /// fingerprint in both forms, and the server certificate's names and
    /// expiry.
    pub fn lines(&self, now: DateTime<Utc>) -> Vec<String> {
        let days_left = (self.server_not_after - now).num_days();
        let validity = if self.server_not_after <= now {
            format!(
                "EXPIRED on {}; run `clinic-server tls renew`",
                self.server_not_after.format("%Y-%m-%d")
            )
        } else {
            format!(
                "valid until {} ({days_left} days)",
                self.server_not_after.format("%Y-%m-%d")
            )
        };
        vec![
            format!(
                "clinic CA certificate: {} (copy this file to every desk)",
                self.ca_cert.display()
            ),
            format!("CA fingerprint (SHA-256): {}", self.ca_fingerprint.hex()),
            format!(
                "CA fingerprint, to read aloud: {}",
                self.ca_fingerprint.short()
            ),
            format!(
                "server certificate: {}, {validity}",
                self.server_cert.display()
            ),
            format!("server names: {}", self.server_names.join(", ")),
        ]
    }
}

/// Names and addresses to put in a server certificate, beyond the ones
/// always there (`localhost`, `127.0.0.1`, `::1` and the machine's host
/// name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerNames {
    /// DNS names (`--hostname`).
    pub hostnames: Vec<String>,
    /// IP addresses (`--ip`).
    pub ips: Vec<IpAddr>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate of a PEM file (the server's first, then its
/// chain).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::BadPem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// A rustls server configuration for a certificate chain and key (PEM),
/// speaking HTTP/1.1 (ALPN `http/1.1`; WebSockets upgrade from it), TLS 1.2
/// and 1.3 with rustls' safe defaults.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert)?;
    let key = read_private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The acceptor `run` wraps accepted connections in.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    Ok(tokio_rustls::TlsAcceptor::from(server_config(cert, key)?))
}

/// This machine's host name, when it has one worth putting in a certificate.
pub fn machine_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = raw.trim().to_ascii_lowercase();
    (valid_dns_name(&name) && name != "localhost").then_some(name)
}

fn valid_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|_| TlsError::BadTime)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    // Positive, non-zero: the top bit clear, the first byte never zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Every name the server certificate gets, in order, without duplicates.
fn all_names(extra: &ServerNames) -> Result<(Vec<String>, Vec<IpAddr>), TlsError> {
    let mut dns: Vec<String> = Vec::new();
    for name in extra
        .hostnames
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
    {
        if !valid_dns_name(&name) {
            return Err(TlsError::BadHostname { name });
        }
        if !dns.contains(&name) {
            dns.push(name);
        }
    }
    for name in machine_hostname()
        .into_iter()
        .chain(["localhost".to_owned()])
    {
        if !dns.contains(&name) {
            dns.push(name);
        }
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in extra.ips.iter().copied().chain([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok((dns, ips))
}

fn server_params(
    names: &ServerNames,
    now: DateTime<Utc>,
) -> Result<(CertificateParams, Vec<String>), TlsError> {
    let (dns, ips) = all_names(names)?;
    let mut params = CertificateParams::default();
    let mut sans = Vec::new();
    for name in &dns {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| TlsError::BadHostname { name: name.clone() })?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns[0].clone());
    dn.push(DnType::OrganizationName, "Clinic Sync server");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = to_offset(now - chrono::Duration::seconds(BACKDATE_SECONDS))?;
    params.not_after = to_offset(now + chrono::Duration::days(SERVER_VALID_DAYS))?;
    let shown = dns
        .into_iter()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    Ok((params, shown))
}

/// Makes a clinic CA and a server certificate signed by it in `paths.dir`.
/// Refuses to replace an existing setup unless `force`.
pub fn init(
    paths: &TlsPaths,
    names: &ServerNames,
    force: bool,
    now: DateTime<Utc>,
) -> Result<TlsSummary, TlsError> {
    if paths.any_exists() && !force {
        return Err(TlsError::Exists {
            dir: paths.dir.clone(),
        });
    }
    // Validate the names before making anything.
    server_params(names, now)?;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let site = machine_hostname().unwrap_or_else(|| "clinic".to_owned());
    dn.push(
        DnType::CommonName,
        format!("Clinic Sync clinic CA ({site}, {})", now.format("%Y-%m-%d")),
    );
    dn.push(DnType::OrganizationName, "Clinic Sync clinic CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(random_serial());
    ca.not_before = to_offset(now - chrono::Duration::seconds(BACKDATE_SECONDS))?;
    ca.not_after = to_offset(now + chrono::Duration::days(CA_VALID_DAYS))?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let (params, _) = server_params(names, now)?;
    let server_cert = params.signed_by(&server_key, &issuer)?;

    make_private_dir(&paths.dir)?;
    // Keys first: a certificate on disk always has its key.
    write_private(&paths.ca_key, ca_key.serialize_pem().as_bytes())?;
    write_private(&paths.ca_cert, ca_cert.pem().as_bytes())?;
    write_private(&paths.server_key, server_key.serialize_pem().as_bytes())?;
    write_chain(paths, &server_cert.pem(), &ca_cert.pem())?;
    show(paths)
}

/// Writes `server.pem` as the full chain, the server certificate then the
/// clinic CA: a desk that does not trust the CA yet is shown the CA's
/// fingerprint (the one `tls show` prints) and can pin the CA itself, so a
/// renewed server certificate is trusted without asking again.
fn write_chain(paths: &TlsPaths, server_pem: &str, ca_pem: &str) -> Result<(), TlsError> {
    let chain = format!("{}\n{}", server_pem.trim_end(), ca_pem.trim_start());
    write_private(&paths.server_cert, chain.as_bytes())
}

/// Issues a new server certificate and key from the existing clinic CA.
/// With no names given, the new certificate keeps the old one's names.
pub fn renew(
    paths: &TlsPaths,
    names: &ServerNames,
    now: DateTime<Utc>,
) -> Result<TlsSummary, TlsError> {
    if !paths.ca_cert.exists() || !paths.ca_key.exists() {
        return Err(TlsError::Missing {
            dir: paths.dir.clone(),
        });
    }
    let ca_key_pem = String::from_utf8_lossy(&read(&paths.ca_key)?).into_owned();
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let ca_pem = String::from_utf8_lossy(&read(&paths.ca_cert)?).into_owned();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;
    let names = if names.hostnames.is_empty() && names.ips.is_empty() && paths.server_cert.exists()
    {
        existing_names(&paths.server_cert)?
    } else {
        names.clone()
    };
    let server_key = KeyPair::generate()?;
    let (params, _) = server_params(&names, now)?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    write_private(&paths.server_key, server_key.serialize_pem().as_bytes())?;
    write_chain(paths, &server_cert.pem(), &ca_pem)?;
    show(paths)
}

/// Reads an existing setup: the CA's fingerprint, the server certificate's
/// names and expiry.
pub fn show(paths: &TlsPaths) -> Result<TlsSummary, TlsError> {
    if !paths.ca_cert.exists() {
        return Err(TlsError::Missing {
            dir: paths.dir.clone(),
        });
    }
    let ca = read_certificates(&paths.ca_cert)?;
    let ca_fingerprint = Fingerprint::of_der(ca[0].as_ref());
    let server = read_certificates(&paths.server_cert)?;
    let (not_after, server_names) = describe(&paths.server_cert, server[0].as_ref())?;
    Ok(TlsSummary {
        ca_cert: paths.ca_cert.clone(),
        ca_fingerprint,
        server_cert: paths.server_cert.clone(),
        server_not_after: not_after,
        server_names,
    })
}

/// A certificate's expiry and subject alternative names.
pub fn describe(path: &Path, der: &[u8]) -> Result<(DateTime<Utc>, Vec<String>), TlsError> {
    let bad = || TlsError::BadCertificate {
        path: path.to_path_buf(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| bad())?;
    let not_after =
        DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).ok_or_else(bad)?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok((not_after, names))
}

fn existing_names(server_cert: &Path) -> Result<ServerNames, TlsError> {
    let certs = read_certificates(server_cert)?;
    let (_, names) = describe(server_cert, certs[0].as_ref())?;
    let mut out = ServerNames::default();
    for name in names {
        match name.parse::<IpAddr>() {
            Ok(ip) => out.ips.push(ip),
            Err(_) => out.hostnames.push(name),
        }
    }
    Ok(out)
}

fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(write_err)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600: to a temporary file first,
/// synced, then renamed over `path`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    #[cfg(unix)]
    {
        // An existing temporary file keeps its old mode: set it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

/// An accepted connection: plain TCP, or TLS over it.
pub type Connection =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Turns an accepted connection into what hyper serves: as it is without
/// TLS; otherwise after a TLS handshake that must finish within `timeout`.
/// A failed or slow handshake is logged at debug and the connection
/// dropped (`None`); a plain-HTTP request to the TLS port gets a plain
/// `400` that says to use `https://`, so a misconfigured desk or script
/// learns why instead of seeing a reset.
pub async fn wrap(
    stream: TcpStream,
    first_byte: u8,
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<Connection> {
    let Some(acceptor) = tls else {
        return Some(Either::Left(stream));
    };
    if first_byte != TLS_HANDSHAKE_RECORD {
        tracing::debug!(%peer, "plain HTTP on the TLS port; answered 400");
        refuse_plain_http(stream).await;
        return None;
    }
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(Either::Right(Box::new(tls_stream))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not finished in time; closed");
            None
        }
    }
}

/// Answers a plain-HTTP request on the TLS port with `400` and closes.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Read the request head first (bounded): closing with unread data would
    // reset the connection and the client could lose the answer.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = serde_json::to_string(&ErrorBody::new(
        ErrorCode::BadRequest,
        "this server speaks HTTPS only: use https:// (and trust the clinic CA)",
    ))
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn init_makes_a_ca_and_a_server_certificate_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::in_data_dir(dir.path());
        let names = ServerNames {
            hostnames: vec!["Clinic-Server.lan".into()],
            ips: vec!["192.0.2.10".parse().unwrap()],
        };
        let summary = init(&paths, &names, false, now()).unwrap();
        assert!(paths.has_server_identity());
        for n in [
            "clinic-server.lan",
            "localhost",
            "192.0.2.10",
            "127.0.0.1",
            "::1",
        ] {
            assert!(
                summary.server_names.iter().any(|s| s == n),
                "{n} in {:?}",
                summary.server_names
            );
        }
        let days = (summary.server_not_after - now()).num_days();
        assert!(
            (SERVER_VALID_DAYS - 2..=SERVER_VALID_DAYS).contains(&days),
            "{days}"
        );
        server_config(&paths.server_cert, &paths.server_key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [
                &paths.ca_key,
                &paths.server_key,
                &paths.ca_cert,
                &paths.server_cert,
            ] {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
            let mode = std::fs::metadata(&paths.dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        // The fingerprint shown is the CA file's.
        let ca = read_certificates(&paths.ca_cert).unwrap();
        assert_eq!(summary.ca_fingerprint, Fingerprint::of_der(ca[0].as_ref()));
    }

    #[test]
    fn init_refuses_to_overwrite_without_force_and_renew_keeps_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::in_data_dir(dir.path());
        let first = init(&paths, &ServerNames::default(), false, now()).unwrap();
        let err = init(&paths, &ServerNames::default(), false, now()).unwrap_err();
        assert!(matches!(err, TlsError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        let old_server = std::fs::read(&paths.server_cert).unwrap();
        let renewed = renew(&paths, &ServerNames::default(), now()).unwrap();
        assert_eq!(renewed.ca_fingerprint, first.ca_fingerprint);
        assert_eq!(renewed.server_names, first.server_names);
        assert_ne!(std::fs::read(&paths.server_cert).unwrap(), old_server);
        server_config(&paths.server_cert, &paths.server_key).unwrap();
        let replaced = init(&paths, &ServerNames::default(), true, now()).unwrap();
        assert_ne!(replaced.ca_fingerprint, first.ca_fingerprint);
    }

    #[test]
    fn bad_names_and_files_get_errors_that_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::in_data_dir(dir.path());
        let names = ServerNames {
            hostnames: vec!["not a name".into()],
            ips: vec![],
        };
        let err = init(&paths, &names, false, now()).unwrap_err();
        assert!(err.to_string().contains("--hostname `not a name`"), "{err}");
        assert!(!paths.dir.exists(), "nothing written for bad input");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err = server_config(&junk, &junk).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = server_config(&dir.path().join("absent.pem"), &junk).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");

        // A key that belongs to another certificate.
        init(&paths, &ServerNames::default(), false, now()).unwrap();
        let err = server_config(&paths.server_cert, &paths.ca_key).unwrap_err();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
        let err = server_config(&paths.server_cert, &paths.server_cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }
}
