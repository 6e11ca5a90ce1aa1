//! RSA keys, their fingerprints, PEM encoding and self-signed certificates.

mod backup;
mod cert;
mod pem;
mod raw;

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use base64::Engine as _;

use crate::secret::{SecretBytes, SecretString};

pub use backup::{KeyMaterial, read_key_material, read_private_keys};
pub use cert::{Certificate, CertificateError, CertificateRequest};
pub use pem::{PemBlock, pem_blocks, pem_encode};

static PRIVATE_OPERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many RSA private-key operations this process has made (for benchmarks and reports).
pub fn private_operations() -> u64 {
    PRIVATE_OPERATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn count_private_operation() {
    PRIVATE_OPERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No PEM private key block was found.
    #[error(
        "no private key found: expected a PEM block 'RSA PRIVATE KEY' (PKCS#1) or 'PRIVATE KEY' (PKCS#8)"
    )]
    NoPrivateKey,
    /// The block was found but is not an acceptable RSA key.
    #[error(
        "the {label} block is not a usable RSA private key ({reason}); only unencrypted RSA keys of 2048 to 8192 bits work"
    )]
    InvalidPrivateKey {
        /// PEM label of the block.
        label: String,
        /// The backend's reason, which never contains key bytes.
        reason: String,
    },
    /// The public key could not be parsed.
    #[error("not a usable RSA public key: {0}")]
    InvalidPublicKey(String),
    /// A Secret or List key backup that holds no usable key.
    #[error("{0}")]
    Backup(String),
    /// Key generation failed in the backend.
    #[error("RSA key generation failed")]
    Generate,
}

/// SHA-256 of a public key's DER `SubjectPublicKeyInfo`, shown as `sha256:<hex>`.
///
/// The wire format carries no key id, so kvseal records this with what it seals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER `SubjectPublicKeyInfo`.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest(&SHA256, spki_der).as_ref());
        Self(bytes)
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_part = text.strip_prefix("sha256:")?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An RSA public key that can seal.
#[derive(Clone)]
pub struct PublicKey {
    oaep: std::sync::Arc<OaepPublicEncryptingKey>,
    spki_der: Vec<u8>,
    modulus: Vec<u8>,
    fingerprint: Fingerprint,
    kubeseal_fingerprint: String,
}

impl PublicKey {
    /// Parses a DER `SubjectPublicKeyInfo` (or a PKCS#1 `RSAPublicKey`).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let invalid = |e: &dyn fmt::Display| KeyError::InvalidPublicKey(e.to_string());
        // Accept PKCS#1 too by normalising through the RSA type, which reads both.
        let rsa = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| invalid(&e))?;
        let spki = rsa.as_der().map_err(|e| invalid(&e))?;
        let key = PublicEncryptingKey::from_der(spki.as_ref()).map_err(|e| invalid(&e))?;
        Self::from_encrypting_key(key)
    }

    fn from_encrypting_key(key: PublicEncryptingKey) -> Result<Self, KeyError> {
        // Re-encode so that the fingerprint never depends on how the input was encoded.
        let spki_der = key
            .as_der()
            .map_err(|_| KeyError::InvalidPublicKey("cannot encode".into()))?
            .as_ref()
            .to_vec();
        let oaep = OaepPublicEncryptingKey::new(key)
            .map_err(|_| KeyError::InvalidPublicKey("not usable for OAEP".into()))?;
        let fingerprint = Fingerprint::of_spki(&spki_der);
        let modulus = aws_lc_rs::rsa::PublicKey::from_der(&spki_der)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let kubeseal_fingerprint = ssh_fingerprint(&spki_der)?;
        Ok(Self {
            oaep: std::sync::Arc::new(oaep),
            spki_der,
            modulus,
            fingerprint,
            kubeseal_fingerprint,
        })
    }

    /// kvseal's fingerprint of this key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The modulus, big-endian, as long as the key size in bytes.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.oaep.key_size_bits()
    }

    /// The fingerprint kubeseal and the controller log: `SHA256:<unpadded base64>` of the
    /// key in SSH wire format.
    pub fn kubeseal_fingerprint(&self) -> &str {
        &self.kubeseal_fingerprint
    }

    pub(crate) fn oaep(&self) -> &OaepPublicEncryptingKey {
        &self.oaep
    }
}

fn ssh_fingerprint(spki_der: &[u8]) -> Result<String, KeyError> {
    let rsa = aws_lc_rs::rsa::PublicKey::from_der(spki_der)
        .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?;
    let mut wire = Vec::new();
    for field in [
        b"ssh-rsa".to_vec(),
        ssh_mpint(rsa.exponent().big_endian_without_leading_zero()),
        ssh_mpint(rsa.modulus().big_endian_without_leading_zero()),
    ] {
        let len = u32::try_from(field.len())
            .map_err(|_| KeyError::InvalidPublicKey("too large".into()))?;
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&field);
    }
    let hash = digest(&SHA256, &wire);
    Ok(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
    ))
}

fn ssh_mpint(unsigned: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(unsigned.len() + 1);
    if unsigned.first().is_some_and(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(unsigned);
    out
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// An RSA private key that can unseal. It has no `Debug`: nothing prints it.
pub struct PrivateKey {
    oaep: OaepPrivateDecryptingKey,
    raw: Option<raw::RawRsaKey>,
    pkcs8_der: SecretBytes,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a new key of `bits` (2048, 3072, 4096 or 8192).
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            _ => return Err(KeyError::Generate),
        };
        let key = PrivateDecryptingKey::generate(size).map_err(|_| KeyError::Generate)?;
        let pkcs8 = key.as_der().map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(SecretBytes::copy_from(pkcs8.as_ref()))
    }

    /// Parses a PKCS#8 `PrivateKeyInfo`.
    pub fn from_pkcs8_der(der: SecretBytes) -> Result<Self, KeyError> {
        Self::from_pkcs8_labelled(der, "PRIVATE KEY")
    }

    fn from_pkcs8_labelled(der: SecretBytes, label: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::InvalidPrivateKey {
            label: label.into(),
            reason,
        };
        let key =
            PrivateDecryptingKey::from_pkcs8(der.expose()).map_err(|e| invalid(e.to_string()))?;
        let public = PublicKey::from_encrypting_key(key.public_key())?;
        let oaep = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| invalid("not usable for OAEP".into()))?;
        let raw = raw::RawRsaKey::from_pkcs8_der(der.expose());
        Ok(Self {
            oaep,
            raw,
            pkcs8_der: der,
            public,
        })
    }

    /// Parses a PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::InvalidPrivateKey {
            label: "RSA PRIVATE KEY".into(),
            reason,
        };
        let pair = KeyPair::from_der(der).map_err(|e| invalid(e.to_string()))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| invalid("cannot re-encode".into()))?;
        Self::from_pkcs8_labelled(SecretBytes::copy_from(pkcs8.as_ref()), "RSA PRIVATE KEY")
    }

    /// Reads the first private key in PEM text, as Go's `keyutil.ParsePrivateKeyPEM`
    /// does: PKCS#1 or PKCS#8 blocks count, other blocks (certificates) are skipped.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let mut first_error = None;
        for block in pem_blocks(text) {
            let Ok(block) = block else { continue };
            let parsed = match block.label.as_str() {
                "RSA PRIVATE KEY" => Self::from_pkcs1_der(block.der.expose()),
                "PRIVATE KEY" => Self::from_pkcs8_der(block.der),
                _ => continue,
            };
            // Like Go, an unusable key block is skipped in favour of a later one.
            match parsed {
                Ok(key) => return Ok(key),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        Err(first_error.unwrap_or(KeyError::NoPrivateKey))
    }

    /// The key as PKCS#8 PEM, for writing to a store.
    pub fn to_pkcs8_pem(&self) -> SecretString {
        pem_encode("PRIVATE KEY", self.pkcs8_der.expose())
    }

    /// PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &SecretBytes {
        &self.pkcs8_der
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Fingerprint of the public half.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    pub(crate) fn oaep(&self) -> &OaepPrivateDecryptingKey {
        &self.oaep
    }

    /// The raw private operation (no padding); see `keys/raw.rs`. `None` when the
    /// ciphertext does not fit this key.
    ///
    /// Outer `None`: no raw operation for this key; inner `None`: the operation refused the
    /// ciphertext, so this key did not produce it.
    pub(crate) fn decrypt_raw(&self, ciphertext: &[u8]) -> Option<Option<SecretBytes>> {
        let raw = self.raw.as_ref()?;
        // A ciphertext at or above the modulus cannot come from this key: no private
        // operation needed to tell.
        if ciphertext.len() != self.public.modulus.len()
            || ciphertext >= self.public.modulus.as_slice()
        {
            return Some(None);
        }
        count_private_operation();
        Some(raw.decrypt_raw(ciphertext))
    }
}
