//! Lenient PEM reading (as Go's `encoding/pem`) and strict PEM writing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::secret::{SecretBytes, SecretString};

/// One PEM block. The DER is kept in zeroizing memory because it may be a private key.
pub struct PemBlock {
    /// The label between `BEGIN ` and the dashes.
    pub label: String,
    /// The decoded body.
    pub der: SecretBytes,
}

/// Iterates over the PEM blocks in `text`, skipping anything between them. A block whose
/// body is not base64 yields an error naming its label, and iteration continues.
pub fn pem_blocks(text: &[u8]) -> impl Iterator<Item = Result<PemBlock, String>> + '_ {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            let start = find(rest, BEGIN)?;
            let after_begin = &rest[start + BEGIN.len()..];
            let label_end = find(after_begin, b"-----")?;
            let label = String::from_utf8_lossy(&after_begin[..label_end]).into_owned();
            let body_start = &after_begin[label_end + 5..];
            let end_marker = format!("-----END {label}-----");
            let Some(body_len) = find(body_start, end_marker.as_bytes()) else {
                rest = body_start;
                continue;
            };
            rest = &body_start[body_len + end_marker.len()..];
            let body = &body_start[..body_len];
            let mut compact = zeroize::Zeroizing::new(Vec::with_capacity(body.len()));
            for line in body.split(|&b| b == b'\n') {
                // Go skips RFC 1421 headers such as "Proc-Type: ..." before the body.
                if !line.contains(&b':') {
                    compact.extend(line.iter().copied().filter(|b| !b.is_ascii_whitespace()));
                }
            }
            return Some(match STANDARD.decode(compact.as_slice()) {
                Ok(der) => Ok(PemBlock {
                    label,
                    der: SecretBytes::new(der),
                }),
                Err(_) => Err(format!("the PEM block {label:?} is not valid base64")),
            });
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Encodes DER as PEM with 64-column lines. The result is zeroizing because it may be a key.
pub fn pem_encode(label: &str, der: &[u8]) -> SecretString {
    let body = SecretString::new(STANDARD.encode(der));
    let mut out = String::with_capacity(body.expose().len() + body.expose().len() / 64 + 64);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in body.expose().as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    SecretString::new(out)
}
