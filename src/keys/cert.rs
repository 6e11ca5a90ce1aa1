//! Self-signed X.509 certificates, shaped like the ones the controller makes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use der::{Decode as _, Encode as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    SerialNumber,
};
use time::OffsetDateTime;

use super::{PrivateKey, PublicKey, pem_blocks, pem_encode};

/// Why a certificate could not be read, made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// No `CERTIFICATE` PEM block.
    #[error("no PEM 'CERTIFICATE' block found")]
    NoCertificate,
    /// The DER does not parse as X.509.
    #[error("not a valid X.509 certificate: {0}")]
    Invalid(String),
    /// The key is not RSA.
    #[error("the certificate's key is not an RSA key; Sealed Secrets only uses RSA")]
    NotRsa,
    /// NotAfter has passed.
    #[error(
        "the certificate expired on {not_after}; fetch or export the current one (`kvseal keys export-certs`)"
    )]
    Expired {
        /// The certificate's NotAfter, formatted as kubeseal formats it.
        not_after: String,
    },
    /// Signing failed.
    #[error("could not sign the certificate: {0}")]
    Sign(String),
}

/// A parsed X.509 certificate with the fields kvseal needs.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    public_key: PublicKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: Vec<u8>,
}

impl PartialEq for Certificate {
    /// Two certificates are equal when their DER encodings are.
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

/// What a new self-signed certificate should say.
#[derive(Clone, Debug)]
pub struct CertificateRequest {
    /// Subject common name; the controller uses `sealed-secret`.
    pub common_name: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Serial number bytes, big-endian; the top bit must be clear so that it is positive.
    pub serial: [u8; 16],
}

impl CertificateRequest {
    /// A request with a random positive 128-bit serial, as the controller makes.
    pub fn new(common_name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial)
            .expect("the operating system's random number generator failed");
        serial[0] &= 0x7f;
        serial[0] |= 0x40; // never zero, never negative, always 16 bytes long
        Self {
            common_name: common_name.to_owned(),
            not_before,
            not_after,
            serial,
        }
    }
}

impl Certificate {
    /// Parses DER.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| CertificateError::Invalid(e.to_string()))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| CertificateError::Invalid(e.to_string()))?;
        let public_key = PublicKey::from_der(&spki).map_err(|_| CertificateError::NotRsa)?;
        let to_time = |t: &x509_cert::time::Time| {
            let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| CertificateError::Invalid(e.to_string()))
        };
        Ok(Self {
            der: der.to_vec(),
            public_key,
            not_before: to_time(&tbs.validity().not_before)?,
            not_after: to_time(&tbs.validity().not_after)?,
            serial: tbs.serial_number().as_bytes().to_vec(),
        })
    }

    /// Parses the first `CERTIFICATE` block of PEM text, as kubeseal's `--cert` does.
    pub fn from_pem(text: &[u8]) -> Result<Self, CertificateError> {
        let block = pem_blocks(text)
            .filter_map(Result::ok)
            .find(|b| b.label == "CERTIFICATE")
            .ok_or(CertificateError::NoCertificate)?;
        Self::from_der(block.der.expose())
    }

    /// Makes a self-signed certificate for `key`, with the controller's template:
    /// CA, key usage "encipher only", subject CN only, SHA256-RSA.
    pub fn self_signed(
        key: &PrivateKey,
        request: &CertificateRequest,
    ) -> Result<Self, CertificateError> {
        let signer = Signer::new(key)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name.as_str());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::EncipherOnly];
        params.serial_number = Some(SerialNumber::from_slice(&request.serial));
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        let cert = params
            .self_signed(&signer)
            .map_err(|e| CertificateError::Sign(e.to_string()))?;
        Self::from_der(cert.der())
    }

    /// PEM text.
    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der).expose().to_owned()
    }

    /// DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certified public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Start of validity. The controller seals with the key whose certificate starts last.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Serial number, big-endian DER content bytes.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Refuses an expired certificate, as kubeseal does before sealing.
    pub fn check_not_expired(&self, now: OffsetDateTime) -> Result<(), CertificateError> {
        if now > self.not_after {
            let format =
                time::macros::format_description!("[month repr:long] [day padding:none], [year]");
            let not_after = self
                .not_after
                .format(&format)
                .unwrap_or_else(|_| self.not_after.to_string());
            return Err(CertificateError::Expired { not_after });
        }
        Ok(())
    }
}

/// Adapts a kvseal key to rcgen, so that rcgen never holds its own copy of the private key.
struct Signer {
    pair: RsaKeyPair,
    public_pkcs1: Vec<u8>,
}

impl Signer {
    fn new(key: &PrivateKey) -> Result<Self, CertificateError> {
        let pair = RsaKeyPair::from_pkcs8(key.pkcs8_der().expose())
            .map_err(|e| CertificateError::Sign(e.to_string()))?;
        let public_pkcs1 = aws_lc_rs::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec();
        Ok(Self { pair, public_pkcs1 })
    }
}

impl rcgen::PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public_pkcs1
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        Ok(signature)
    }
}
