//! Each project's certificate authority (as on Aiven: `GET /v1/project/P/kms/ca`,
//! `avn project ca-get`) and the server certificates it signs.
//!
//! A project's CA is created on first need, in the store's write transaction that found
//! none, so instances sharing one store never create two; its private key stays in the
//! store (never in an answer or a log line: it is a [`PrivateKeyPem`]), so every instance
//! signs with it. Keys are ECDSA P-256; the CA is valid 10 years, a server certificate 90
//! days, and a server certificate is due for rotation when it has less than 30 days left.
//!
//! The functions below are pure but for the randomness of keys and serial numbers: the
//! time is an argument.

use crate::{App, AppError, Caller};
use keyhaven_core::PrivateKeyPem;
use keyhaven_core::time::now_micros;
use keyhaven_store::ProjectCaRow;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::fmt;

/// How long a project's CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a server certificate is valid.
pub const SERVER_CERT_VALIDITY_DAYS: i64 = 90;
/// A server certificate with less than this left is replaced.
pub const ROTATE_BEFORE_DAYS: i64 = 30;
/// Certificates start this far in the past, so a client whose clock is a little behind
/// accepts a certificate signed a moment ago.
const BACKDATE_SECS: i64 = 3600;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// A certificate could not be made: a bad SAN, or a stored CA that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaError(String);

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaError {}

impl From<CaError> for AppError {
    fn from(e: CaError) -> Self {
        AppError::Internal(format!("certificate authority: {e}"))
    }
}

/// rcgen's errors name what failed, never key material.
fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> CaError + '_ {
    move |e| CaError(format!("{what}: {e}"))
}

/// The common name of a project's CA.
pub fn ca_common_name(project: &str) -> String {
    format!("Keyhaven project {project} CA")
}

/// A server certificate and its key, with its validity (µs since the epoch).
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub certificate_pem: String,
    pub private_key: PrivateKeyPem,
    pub not_before: i64,
    pub not_after: i64,
}

fn datetime(micros: i64) -> Result<time::OffsetDateTime, CaError> {
    time::OffsetDateTime::from_unix_timestamp(micros.div_euclid(1_000_000))
        .map_err(|e| CaError(format!("time out of range: {e}")))
}

/// A random positive serial number of 16 bytes (RFC 5280: at most 20, unpredictable).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    // Positive, and 16 bytes long once encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("generating a key"))
}

/// The parameters of a CA named `common_name`: what its certificate says, and what every
/// certificate it signs names as its issuer (so they are built in this one place, from
/// the stored common name).
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Keyhaven");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    // It signs server certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new CA for `project`: an ECDSA P-256 key and a self-signed certificate valid
/// [`CA_VALIDITY_DAYS`] from `now` (µs since the epoch).
pub fn new_project_ca(project: &str, now: i64) -> Result<ProjectCaRow, CaError> {
    let common_name = ca_common_name(project);
    let key = new_key()?;
    let mut params = ca_params(&common_name);
    params.serial_number = Some(random_serial());
    params.not_before = datetime(now - BACKDATE_SECS * 1_000_000)?;
    params.not_after = datetime(now + CA_VALIDITY_DAYS * MICROS_PER_DAY)?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("signing the CA certificate"))?;
    Ok(ProjectCaRow {
        project: project.to_string(),
        common_name,
        certificate_pem: cert.pem(),
        private_key: PrivateKeyPem::new(key.serialize_pem()),
        create_time: now,
    })
}

/// A server certificate signed by `ca` for `sans` (IP addresses and DNS names; the first
/// is also its common name), with a new ECDSA P-256 key, valid
/// [`SERVER_CERT_VALIDITY_DAYS`] from `now` (µs since the epoch).
pub fn sign_server_cert(ca: &ProjectCaRow, sans: &[&str], now: i64) -> Result<ServerCert, CaError> {
    let Some(first) = sans.first() else {
        return Err(CaError(
            "a server certificate needs at least one name".into(),
        ));
    };
    if let Some(bad) = sans
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(CaError(format!(
            "'{bad}' is not a DNS name or an IP address"
        )));
    }
    let ca_key = KeyPair::from_pem(ca.private_key.expose())
        .map_err(rcgen_error("reading the project CA's key"))?;
    let issuer = Issuer::new(ca_params(&ca.common_name), ca_key);

    let key = new_key()?;
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .map_err(|e| CaError(format!("the names {sans:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, *first);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    let not_before = now - BACKDATE_SECS * 1_000_000;
    let not_after = now + SERVER_CERT_VALIDITY_DAYS * MICROS_PER_DAY;
    params.not_before = datetime(not_before)?;
    params.not_after = datetime(not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("signing a server certificate"))?;
    Ok(ServerCert {
        certificate_pem: cert.pem(),
        private_key: PrivateKeyPem::new(key.serialize_pem()),
        // X.509 times have whole seconds.
        not_before: not_before.div_euclid(1_000_000) * 1_000_000,
        not_after: not_after.div_euclid(1_000_000) * 1_000_000,
    })
}

/// Whether a certificate that expires at `not_after` should be replaced at `now` (both µs
/// since the epoch): when less than [`ROTATE_BEFORE_DAYS`] are left, or it has expired.
pub fn due_for_rotation(not_after: i64, now: i64) -> bool {
    not_after - now < ROTATE_BEFORE_DAYS * MICROS_PER_DAY
}

impl App {
    /// `GET /v1/project/P/kms/ca`: the project's CA certificate (PEM), created on first
    /// need. The caller must be a member of the project.
    pub async fn project_ca_get(&self, caller: &Caller, project: &str) -> Result<String, AppError> {
        self.store
            .read(|tx| crate::identity::visible_project(tx, caller, project))
            .await?;
        Ok(self.project_ca(project).await?.certificate_pem)
    }

    /// The CA of `project` (which must exist), created and stored if it has none yet.
    /// Every instance gets the same one: the CA is looked for again, and stored, in one
    /// write transaction, which holds the store's write lock.
    pub async fn project_ca(&self, project: &str) -> Result<ProjectCaRow, AppError> {
        if let Some(ca) = self.store.read(|tx| tx.project_ca_get(project)).await? {
            return Ok(ca);
        }
        // Made before the transaction, so the write lock is not held while a key is
        // generated; lost if another request stored one first.
        let new = new_project_ca(project, now_micros())?;
        let (ca, created) = self
            .store
            .write(|tx| {
                if tx.project_get(project)?.is_none() {
                    return Err(AppError::project_not_found(project));
                }
                if let Some(ca) = tx.project_ca_get(project)? {
                    return Ok((ca, false));
                }
                tx.project_ca_insert(&new)?;
                Ok((new, true))
            })
            .await?;
        if created {
            tracing::info!(project, common_name = %ca.common_name, "project CA created");
        }
        Ok(ca)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::time::Duration;

    const NOW: i64 = 1_780_000_000 * 1_000_000;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Verifies `leaf` as a TLS server certificate chained to `ca` at `at` (µs), for `name`.
    fn verify(ca: &ProjectCaRow, leaf: &str, at: i64, name: &str) -> Result<(), String> {
        let ca_der = der(&ca.certificate_pem);
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| e.to_string())?;
        let leaf_der = der(leaf);
        let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| e.to_string())?;
        ee.verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &[anchor],
            &[],
            UnixTime::since_unix_epoch(Duration::from_micros(at as u64)),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_server_certificate_verifies_against_its_project_ca_for_the_names_given() {
        let ca = new_project_ca("default", NOW).unwrap();
        assert_eq!(ca.common_name, "Keyhaven project default CA");
        assert!(
            ca.certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            ca.private_key
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );

        let cert = sign_server_cert(&ca, &["127.0.0.1", "db.example.com", "::1"], NOW).unwrap();
        assert!(
            cert.certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            cert.private_key
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_ne!(cert.private_key, ca.private_key);
        for name in ["127.0.0.1", "db.example.com", "::1"] {
            verify(&ca, &cert.certificate_pem, NOW, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // A name it was not given is refused.
        for name in ["127.0.0.2", "other.example.com"] {
            assert!(
                verify(&ca, &cert.certificate_pem, NOW, name).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_ca_read_back_from_the_store_signs_what_its_certificate_verifies() {
        // As stored: the PEM texts and the common name, nothing else.
        let ca = new_project_ca("p1", NOW).unwrap();
        let stored = ProjectCaRow {
            project: ca.project.clone(),
            common_name: ca.common_name.clone(),
            certificate_pem: ca.certificate_pem.clone(),
            private_key: PrivateKeyPem::new(ca.private_key.expose().to_string()),
            create_time: ca.create_time,
        };
        let cert = sign_server_cert(&stored, &["10.0.0.5"], NOW + MICROS_PER_DAY).unwrap();
        verify(
            &ca,
            &cert.certificate_pem,
            NOW + 2 * MICROS_PER_DAY,
            "10.0.0.5",
        )
        .unwrap();
    }

    #[test]
    fn another_projects_ca_does_not_verify_the_certificate() {
        let ca = new_project_ca("p1", NOW).unwrap();
        let other = new_project_ca("p2", NOW).unwrap();
        let cert = sign_server_cert(&ca, &["127.0.0.1"], NOW).unwrap();
        assert!(verify(&other, &cert.certificate_pem, NOW, "127.0.0.1").is_err());
        // Even a CA of the same project name, made again, is another CA.
        let again = new_project_ca("p1", NOW).unwrap();
        assert_ne!(again.certificate_pem, ca.certificate_pem);
        assert!(verify(&again, &cert.certificate_pem, NOW, "127.0.0.1").is_err());
    }

    #[test]
    fn a_server_certificate_is_valid_90_days_and_rotated_30_days_before_it_expires() {
        let ca = new_project_ca("default", NOW).unwrap();
        let cert = sign_server_cert(&ca, &["127.0.0.1"], NOW).unwrap();
        assert_eq!(cert.not_after, NOW + 90 * MICROS_PER_DAY);
        assert!(cert.not_before < NOW);
        // Valid from a moment before it was signed (a client clock a little behind) until
        // its expiry, not after.
        verify(
            &ca,
            &cert.certificate_pem,
            NOW - 60 * 1_000_000,
            "127.0.0.1",
        )
        .unwrap();
        verify(
            &ca,
            &cert.certificate_pem,
            cert.not_after - 1_000_000,
            "127.0.0.1",
        )
        .unwrap();
        assert!(
            verify(
                &ca,
                &cert.certificate_pem,
                cert.not_after + 1_000_000,
                "127.0.0.1"
            )
            .is_err()
        );

        assert!(!due_for_rotation(cert.not_after, NOW));
        assert!(!due_for_rotation(cert.not_after, NOW + 59 * MICROS_PER_DAY));
        assert!(due_for_rotation(cert.not_after, NOW + 61 * MICROS_PER_DAY));
        assert!(due_for_rotation(cert.not_after, cert.not_after + 1));
    }

    /// What OpenSSL reads in the CA certificate (when the `openssl` command exists): a CA
    /// (basicConstraints CA:TRUE, path length 0, key usage to sign certificates), its name,
    /// 10 years of validity.
    #[test]
    fn openssl_reads_the_ca_certificate_as_a_ca_valid_ten_years() {
        let ca = new_project_ca("default", NOW).unwrap();
        let dir = std::env::temp_dir().join(format!("keyhaven-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, &ca.certificate_pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-startdate",
                "-enddate",
                "-ext",
            ])
            .arg("basicConstraints,keyUsage")
            .arg("-in")
            .arg(&path)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(out) = out else {
            eprintln!("no openssl command: skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("CN = Keyhaven project default CA"), "{text}");
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
        assert!(text.contains("Certificate Sign"), "{text}");
        // NOW is 2026-05-28; ten years (3650 days) later is 2036-05-25.
        assert!(
            text.contains("notBefore=May 28 ") && text.contains(" 2026 GMT"),
            "{text}"
        );
        assert!(
            text.contains("notAfter=May 25 ") && text.contains(" 2036 GMT"),
            "{text}"
        );
    }

    #[test]
    fn no_names_or_a_bad_name_is_refused() {
        let ca = new_project_ca("default", NOW).unwrap();
        assert!(sign_server_cert(&ca, &[], NOW).is_err());
        assert!(sign_server_cert(&ca, &[""], NOW).is_err());
        assert!(sign_server_cert(&ca, &["a host"], NOW).is_err());
        assert!(sign_server_cert(&ca, &["bücher.example"], NOW).is_err());
    }

    #[test]
    fn no_debug_output_holds_a_private_key() {
        let ca = new_project_ca("default", NOW).unwrap();
        let cert = sign_server_cert(&ca, &["127.0.0.1"], NOW).unwrap();
        let shown = format!("{ca:?} {cert:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let key_body = ca.private_key.expose().lines().nth(1).unwrap().to_string();
        assert!(!shown.contains(&key_body), "{shown}");
    }
}
