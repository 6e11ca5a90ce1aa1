//! The raw RSA private operation (no padding), for the scanner only.
//!
//! The OAEP label does not enter the modular exponentiation: with the raw result, one
//! private operation per (field, key) tells whether the key is the right one *and* which
//! label the value was sealed under (by comparing the label hash inside the OAEP block).
//! aws-lc-rs does not expose this, so this module calls AWS-LC (the same library, through
//! aws-lc-sys) directly. AWS-LC's private operation is constant-time and blinded.
//! Unsealing for output keeps using aws-lc-rs's OAEP (`format::open`).
#![allow(unsafe_code)]

use std::ptr::NonNull;

use aws_lc_sys::{
    CBS, CBS_init, EVP_PKEY_free, EVP_PKEY_get1_RSA, EVP_parse_private_key, RSA, RSA_NO_PADDING,
    RSA_free, RSA_private_decrypt, RSA_size,
};

use crate::secret::SecretBytes;

/// An AWS-LC RSA private key handle.
pub(crate) struct RawRsaKey {
    rsa: NonNull<RSA>,
    size: usize,
}

// SAFETY: AWS-LC documents RSA private-key operations on a shared, unmodified RSA object
// as thread-safe (blinding and Montgomery contexts are set up under internal locks), and
// this type never modifies the key after construction.
unsafe impl Send for RawRsaKey {}
// SAFETY: as above.
unsafe impl Sync for RawRsaKey {}

impl RawRsaKey {
    /// Parses a PKCS#8 RSA private key.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Option<Self> {
        // SAFETY: `cbs` is initialised over `der`, which outlives every use of it here;
        // EVP_parse_private_key only reads from it. Every pointer returned is checked for
        // null, and each reference taken is released exactly once.
        unsafe {
            let mut cbs = std::mem::MaybeUninit::<CBS>::uninit();
            CBS_init(cbs.as_mut_ptr(), der.as_ptr(), der.len());
            let mut cbs = cbs.assume_init();
            let pkey = EVP_parse_private_key(&mut cbs);
            if pkey.is_null() {
                return None;
            }
            let rsa = EVP_PKEY_get1_RSA(pkey);
            EVP_PKEY_free(pkey);
            let rsa = NonNull::new(rsa)?;
            let size = RSA_size(rsa.as_ptr()) as usize;
            Some(Self { rsa, size })
        }
    }

    /// `ciphertext ^ d mod n`, left-padded to the modulus size, or `None` when the input
    /// is not a valid RSA ciphertext for this key (wrong length, or not below the modulus).
    pub(crate) fn decrypt_raw(&self, ciphertext: &[u8]) -> Option<SecretBytes> {
        if ciphertext.len() != self.size {
            return None;
        }
        let mut out = SecretBytes::new(vec![0u8; self.size]);
        // SAFETY: `ciphertext` is `size` bytes and `out` has room for `size` bytes, which is
        // RSA_size, the most RSA_private_decrypt writes; `self.rsa` is a live key.
        let written = unsafe {
            RSA_private_decrypt(
                ciphertext.len(),
                ciphertext.as_ptr(),
                out.expose_mut().as_mut_ptr(),
                self.rsa.as_ptr(),
                RSA_NO_PADDING,
            )
        };
        (usize::try_from(written).ok() == Some(self.size)).then_some(out)
    }
}

impl Drop for RawRsaKey {
    fn drop(&mut self) {
        // SAFETY: the pointer came from EVP_PKEY_get1_RSA, which took a reference that is
        // released here, once.
        unsafe { RSA_free(self.rsa.as_ptr()) }
    }
}
