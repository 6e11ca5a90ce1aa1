//! Sealing and opening one value.

use aws_lc_rs::aead::{
    AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey,
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};

use crate::keys::{PrivateKey, PublicKey};
use crate::secret::SecretBytes;

/// Length of the random AES key that kvseal generates for every value.
pub const SESSION_KEY_LEN: usize = 32;
const LENGTH_PREFIX_LEN: usize = 2;
const GCM_TAG_LEN: usize = 16;

/// Go's `base64.StdEncoding`, which the controller decodes with: padding required, but
/// non-zero trailing bits in the last symbol tolerated.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Why a value could not be sealed or opened. None of the messages contain secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The text is not standard padded base64.
    #[error(
        "not valid base64 ({detail}); the value is damaged or a placeholder: seal it again with `kvseal seal`"
    )]
    Base64 {
        /// What the decoder found.
        detail: String,
    },
    /// Fewer than the two bytes of the length prefix.
    #[error(
        "the value is {len} bytes, too short for its 2-byte length prefix; it was truncated: seal it again"
    )]
    MissingLengthPrefix {
        /// Decoded length.
        len: usize,
    },
    /// The length prefix claims more bytes than there are.
    #[error(
        "the length prefix declares a {declared}-byte RSA part but only {available} bytes follow; the value was truncated: seal it again"
    )]
    TruncatedRsaPart {
        /// The RSA ciphertext length the prefix declares.
        declared: usize,
        /// The bytes actually present after the prefix.
        available: usize,
    },
    /// The AES-GCM part is shorter than its tag.
    #[error(
        "only {len} bytes follow the RSA part, fewer than the 16-byte AES-GCM tag; the value was truncated: seal it again"
    )]
    TruncatedTag {
        /// Bytes after the RSA part.
        len: usize,
    },
    /// The RSA part has the wrong size for this key, so another key sealed it.
    #[error(
        "the RSA part is {rsa_len} bytes but a {key_bits}-bit key produces {key_len}-byte parts: the value was sealed with another key"
    )]
    KeySizeMismatch {
        /// Length of the RSA part in the value.
        rsa_len: usize,
        /// Size of the key's modulus in bits.
        key_bits: usize,
        /// Size of the key's modulus in bytes.
        key_len: usize,
    },
    /// OAEP decryption failed: another key, or another label (name, namespace or scope).
    #[error(
        "the session key does not decrypt with this key and label: the value was sealed with another key, or for another name, namespace or scope"
    )]
    WrongKeyOrLabel,
    /// AES-GCM authentication failed after the session key unwrapped.
    #[error(
        "AES-GCM authentication failed: the encrypted data was modified or damaged after sealing; seal it again"
    )]
    Tampered,
    /// The backend refused to encrypt (e.g. a key too small for OAEP-SHA-256).
    #[error(
        "RSA-OAEP encryption failed: the certificate's key cannot seal (is it RSA, 2048 bits or more?)"
    )]
    Encrypt,
    /// The raw RSA operation is not available for this key.
    #[error("the raw RSA operation is not available for this key")]
    RawUnavailable,
    /// The RSA part is longer than the 16-bit length prefix can express.
    #[error("the RSA ciphertext is {0} bytes, longer than a 2-byte length prefix allows")]
    KeyTooLarge(usize),
}

/// A per-value AES key. Zeroed on drop, never printed.
pub struct SessionKey(SecretBytes);

impl SessionKey {
    /// A fresh random 32-byte key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = SecretBytes::new(vec![0u8; SESSION_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes_mut(&mut bytes))
            .expect("the operating system's random number generator failed");
        Self(bytes)
    }

    /// A key with fixed bytes, for known-answer tests.
    pub fn from_bytes(bytes: [u8; SESSION_KEY_LEN]) -> Self {
        Self(SecretBytes::copy_from(&bytes))
    }

    fn aead_key(&self) -> Result<LessSafeKey, FormatError> {
        let algorithm = match self.0.len() {
            // kvseal makes 32-byte keys; Go's aes.NewCipher also takes 16 and 24.
            16 => &AES_128_GCM,
            24 => &AES_192_GCM,
            32 => &AES_256_GCM,
            _ => return Err(FormatError::WrongKeyOrLabel),
        };
        let key = UnboundKey::new(algorithm, self.0.expose())
            .map_err(|_| FormatError::WrongKeyOrLabel)?;
        Ok(LessSafeKey::new(key))
    }
}

fn bytes_mut(bytes: &mut SecretBytes) -> &mut [u8] {
    bytes.expose_mut()
}

/// The two parts of a decoded sealed value.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// RSA-OAEP ciphertext of the session key.
    pub rsa_ciphertext: &'a [u8],
    /// AES-256-GCM ciphertext of the plaintext, tag appended.
    pub aes_ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits a decoded value into its parts, checking every length on the way.
    pub fn parse(value: &'a [u8]) -> Result<Self, FormatError> {
        let Some((prefix, rest)) = value.split_first_chunk::<LENGTH_PREFIX_LEN>() else {
            return Err(FormatError::MissingLengthPrefix { len: value.len() });
        };
        let declared = usize::from(u16::from_be_bytes(*prefix));
        if rest.len() < declared {
            return Err(FormatError::TruncatedRsaPart {
                declared,
                available: rest.len(),
            });
        }
        let (rsa_ciphertext, aes_ciphertext) = rest.split_at(declared);
        if aes_ciphertext.len() < GCM_TAG_LEN {
            return Err(FormatError::TruncatedTag {
                len: aes_ciphertext.len(),
            });
        }
        Ok(Self {
            rsa_ciphertext,
            aes_ciphertext,
        })
    }
}

/// Seals `plaintext` for `public_key` under `label` with the given session key.
///
/// The session key is passed in so that tests can fix it; OAEP's own random seed comes
/// from the backend's CSPRNG.
pub fn seal(
    public_key: &PublicKey,
    plaintext: &[u8],
    label: &[u8],
    session_key: &SessionKey,
) -> Result<Vec<u8>, FormatError> {
    let oaep = public_key.oaep();
    let rsa_len = oaep.ciphertext_size();
    let prefix = u16::try_from(rsa_len).map_err(|_| FormatError::KeyTooLarge(rsa_len))?;

    let mut out = Vec::with_capacity(LENGTH_PREFIX_LEN + rsa_len + plaintext.len() + GCM_TAG_LEN);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.resize(LENGTH_PREFIX_LEN + rsa_len, 0);
    let written = oaep
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            session_key.0.expose(),
            &mut out[LENGTH_PREFIX_LEN..],
            Some(label),
        )
        .map_err(|_| FormatError::Encrypt)?
        .len();
    debug_assert_eq!(written, rsa_len);

    // Encrypt in place inside `out`, whose capacity was reserved above, so that no
    // reallocation leaves a plaintext copy behind in freed memory.
    let aes_start = out.len();
    out.extend_from_slice(plaintext);
    let tag = session_key.aead_key().and_then(|key| {
        key.seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut out[aes_start..])
            .map_err(|_| FormatError::Encrypt)
    });
    match tag {
        Ok(tag) => out.extend_from_slice(tag.as_ref()),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            return Err(e);
        }
    }
    Ok(out)
}

/// Decrypts the session key from an envelope's RSA part.
pub fn unwrap_session_key(
    private_key: &PrivateKey,
    rsa_ciphertext: &[u8],
    label: &[u8],
) -> Result<SessionKey, FormatError> {
    let oaep = private_key.oaep();
    let key_len = oaep.key_size_bytes();
    if rsa_ciphertext.len() != key_len {
        return Err(FormatError::KeySizeMismatch {
            rsa_len: rsa_ciphertext.len(),
            key_bits: oaep.key_size_bits(),
            key_len,
        });
    }
    crate::keys::count_private_operation();
    let mut buffer = SecretBytes::new(vec![0u8; oaep.min_output_size()]);
    let len = oaep
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            rsa_ciphertext,
            bytes_mut(&mut buffer),
            Some(label),
        )
        .map_err(|_| FormatError::WrongKeyOrLabel)?
        .len();
    Ok(SessionKey(SecretBytes::copy_from(&buffer.expose()[..len])))
}

/// A session key recovered without knowing the label, and the hash of the label it was
/// sealed under.
pub struct Unwrapped {
    /// SHA-256 of the OAEP label the value was sealed under.
    pub label_hash: [u8; 32],
    /// The session key.
    pub session_key: SessionKey,
}

/// SHA-256 of an OAEP label, to compare with [`Unwrapped::label_hash`].
pub fn label_hash(label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, label).as_ref());
    out
}

/// One private-key operation that tells whether `private_key` sealed this RSA part, and if
/// so under which label (by its hash): the raw RSA result decoded as OAEP-SHA-256 (RFC 8017
/// §7.1.2) without the label check. For the scanner, which would otherwise need one
/// operation per candidate label; an OAEP structure that parses by chance under a wrong key
/// is caught by the AES-GCM tag.
pub fn unwrap_any_label(
    private_key: &PrivateKey,
    rsa_ciphertext: &[u8],
) -> Result<Unwrapped, FormatError> {
    const H: usize = 32;
    let key_len = private_key.oaep().key_size_bytes();
    if rsa_ciphertext.len() != key_len {
        return Err(FormatError::KeySizeMismatch {
            rsa_len: rsa_ciphertext.len(),
            key_bits: private_key.oaep().key_size_bits(),
            key_len,
        });
    }
    let em = private_key
        .decrypt_raw(rsa_ciphertext)
        .ok_or(FormatError::RawUnavailable)?
        .ok_or(FormatError::WrongKeyOrLabel)?;
    let em = em.expose();
    if em.len() < 2 * H + 2 {
        return Err(FormatError::WrongKeyOrLabel);
    }
    let (masked_seed, masked_db) = em[1..].split_at(H);
    let mut seed = SecretBytes::copy_from(masked_seed);
    mgf1_xor(masked_db, seed.expose_mut());
    let mut db = SecretBytes::copy_from(masked_db);
    mgf1_xor(seed.expose(), db.expose_mut());
    let db = db.expose();
    let after_hash = &db[H..];
    let separator = after_hash.iter().position(|&b| b != 0);
    match separator {
        Some(i) if em[0] == 0 && after_hash[i] == 1 => {
            let message = &after_hash[i + 1..];
            if !matches!(message.len(), 16 | 24 | 32) {
                return Err(FormatError::WrongKeyOrLabel);
            }
            let mut label_hash = [0u8; H];
            label_hash.copy_from_slice(&db[..H]);
            Ok(Unwrapped {
                label_hash,
                session_key: SessionKey(SecretBytes::copy_from(message)),
            })
        }
        _ => Err(FormatError::WrongKeyOrLabel),
    }
}

/// XORs MGF1-SHA-256(seed) into `out`.
fn mgf1_xor(seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in out.chunks_mut(32).enumerate() {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(seed);
        context.update(&u32::try_from(counter).unwrap_or(u32::MAX).to_be_bytes());
        let mask = context.finish();
        for (byte, m) in chunk.iter_mut().zip(mask.as_ref()) {
            *byte ^= m;
        }
    }
}

/// Decrypts and authenticates an envelope's AES-GCM part.
pub fn open_with_session_key(
    session_key: &SessionKey,
    aes_ciphertext: &[u8],
) -> Result<SecretBytes, FormatError> {
    let mut buffer = SecretBytes::copy_from(aes_ciphertext);
    let len = session_key
        .aead_key()?
        .open_in_place(zero_nonce(), Aad::empty(), bytes_mut(&mut buffer))
        .map_err(|_| FormatError::Tampered)?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

/// Opens a decoded sealed value with `private_key` under `label`.
pub fn open(
    private_key: &PrivateKey,
    value: &[u8],
    label: &[u8],
) -> Result<SecretBytes, FormatError> {
    let envelope = Envelope::parse(value)?;
    let session_key = unwrap_session_key(private_key, envelope.rsa_ciphertext, label)?;
    open_with_session_key(&session_key, envelope.aes_ciphertext)
}

/// Standard padded base64, as the SealedSecret stores it.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a stored value as the controller does (Go's `StdEncoding`, which skips line breaks).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, FormatError> {
    let result = if text.contains(['\n', '\r']) {
        let compact: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
            text.bytes()
                .filter(|b| !matches!(b, b'\n' | b'\r'))
                .collect(),
        );
        GO_STD_BASE64.decode(compact.as_slice())
    } else {
        GO_STD_BASE64.decode(text)
    };
    result.map_err(|e| {
        // Report the first byte outside the alphabet, as Go's decoder does, so that the
        // offset matches what the controller logs.
        let first_illegal = text.bytes().enumerate().find(|(_, b)| {
            !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
        });
        let detail = match first_illegal {
            Some((offset, byte)) => {
                describe_base64_error(base64::DecodeError::InvalidByte(offset, byte))
            }
            None => describe_base64_error(e),
        };
        FormatError::Base64 { detail }
    })
}

fn describe_base64_error(error: base64::DecodeError) -> String {
    use base64::DecodeError as E;
    match error {
        // The offset only: the character itself may be part of a secret.
        E::InvalidByte(offset, _) => format!("illegal character at input byte {offset}"),
        E::InvalidLength(len) => format!("{len} symbols is not a whole number of base64 groups"),
        E::InvalidLastSymbol { offset, .. } => format!("impossible final symbol at byte {offset}"),
        E::InvalidPadding => "missing or misplaced '=' padding".to_owned(),
    }
}

fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; NONCE_LEN])
}
