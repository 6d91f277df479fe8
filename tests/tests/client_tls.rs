//! The client's side of TLS against the real server: a clinic CA the
//! client was not given is shown by fingerprint and trusted only when the
//! person confirms the same fingerprint; plain `http://` to another machine
//! is refused before anything is sent.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_client::{ClientConfig, ClientError, ClinicClient};
use clinic_e2e::*;
use clinic_shared::fingerprint::Fingerprint;

/// The fingerprint `clinic-server tls show` prints for the server's CA.
fn ca_fingerprint(server: &Server) -> Fingerprint {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_file(server.ca.as_ref().unwrap()).unwrap();
    Fingerprint::of_der(ca.as_ref())
}

#[tokio::test]
async fn an_unknown_clinic_ca_is_trusted_only_after_its_fingerprint_is_confirmed() {
    let server = Server::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let client = ClinicClient::open(ClientConfig::new(dir.path()))
        .await
        .unwrap();

    let refused = client.sign_in(&server.base, "reception", "demo").await;
    let Err(ClientError::UntrustedServer {
        fingerprint, short, ..
    }) = refused
    else {
        panic!("expected an untrusted server, got {refused:?}");
    };
    let expected = ca_fingerprint(&server);
    assert_eq!(
        fingerprint,
        expected.hex(),
        "the CA's fingerprint, as tls show prints it"
    );
    assert_eq!(short, expected.short());
    let message = ClientError::UntrustedServer {
        server: server.base.clone(),
        fingerprint: fingerprint.clone(),
        short: short.clone(),
    }
    .to_string();
    assert!(message.contains(&short), "{message}");

    // A fingerprint that is not the server's trusts nothing.
    let other = Fingerprint::from_bytes([7; 32]);
    assert!(client.trust_server(&server.base, &other.hex()).is_err());
    assert!(matches!(
        client.sign_in(&server.base, "reception", "demo").await,
        Err(ClientError::UntrustedServer { .. })
    ));

    // The confirmed one is trusted from then on, also by a later process.
    client
        .trust_server(&server.base, &short_to_hex(&fingerprint))
        .unwrap();
    let signed_in = client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    assert!(!signed_in.offline);
    client.sync_once().await.unwrap();
    let pinned = dir.path().join("trusted-ca.pem");
    assert!(pinned.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pinned).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    drop(client);
    let again = ClinicClient::open(ClientConfig::new(dir.path()))
        .await
        .unwrap();
    again.sync_once().await.unwrap();
}

/// The fingerprint as a person might type it: lower case, spaces.
fn short_to_hex(hex: &str) -> String {
    hex.to_lowercase().replace(':', " ")
}

#[tokio::test]
async fn plain_http_to_another_machine_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let client = ClinicClient::open(ClientConfig::new(dir.path()))
        .await
        .unwrap();
    // 192.0.2.0/24 is TEST-NET-1: nothing answers there; the refusal must
    // come before any connection is tried.
    let started = std::time::Instant::now();
    let refused = client
        .sign_in("http://192.0.2.10:8787", "reception", "demo")
        .await;
    match refused {
        Err(ClientError::Invalid(message)) => {
            assert!(
                message.contains("only allowed to this computer"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    let out = run_with_stdin(
        std::process::Command::new(bin("clinic"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--server",
                "http://clinic.example:8787",
                "login",
                "--username",
                "reception",
                "--password-stdin",
            ]),
        Some("demo\n"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only allowed to this computer"), "{stderr}");
}
