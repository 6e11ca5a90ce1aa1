//! The Sealed Secrets hybrid encryption format, exactly as the controller's
//! `pkg/crypto/crypto.go` has it. Pure: bytes, key and label in, bytes out.
//!
//! One sealed value is, before base64 (standard alphabet, padded):
//!
//! ```text
//! +-----------+----------------------------+--------------------------------------+
//! | u16 BE: n | n bytes: RSA-OAEP(SHA-256, | AES-256-GCM(session key, nonce = 12  |
//! |           | MGF1-SHA-256, label) of a  | zero bytes, no AAD) of the plaintext,|
//! |           | random 32-byte session key | with the 16-byte tag appended        |
//! +-----------+----------------------------+--------------------------------------+
//! ```
//!
//! The OAEP label binds the value to where it may be unsealed; see [`Scope`].
//! `docs/format.md` restates this with the compatibility notes.

mod hybrid;
mod scope;

pub use hybrid::{
    Envelope, FormatError, SESSION_KEY_LEN, SessionKey, Unwrapped, decode_base64, encode_base64,
    label_hash, open, open_with_session_key, seal, unwrap_any_label, unwrap_session_key,
};
pub use scope::{CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION, ParseScopeError, Scope};
