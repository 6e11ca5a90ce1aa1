//! Known-answer vectors made by Python `cryptography` (tests/data/vectors/make_vectors.py):
//! kvseal must open every good vector to its plaintext, refuse every `fail_` vector with
//! the error named, and the RustCrypto oracle must agree on both.

mod common;

use kvseal::format::{self, FormatError, Scope};
use kvseal::keys::PrivateKey;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(common::data("vectors/vectors.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["vectors"].as_array().unwrap().clone()
}

fn sealed_text(v: &Value) -> String {
    match v["sealed_file"].as_str() {
        Some(file) => std::fs::read_to_string(common::data(&format!("vectors/{file}"))).unwrap(),
        None => v["sealed"].as_str().unwrap().to_owned(),
    }
}

fn label(v: &Value) -> Vec<u8> {
    let scope: Scope = v["scope"].as_str().unwrap().parse().unwrap();
    scope.label(
        v["namespace"].as_str().unwrap(),
        v["secret_name"].as_str().unwrap(),
    )
}

fn error_kind(e: &FormatError) -> &'static str {
    match e {
        FormatError::Base64 { .. } => "Base64",
        FormatError::MissingLengthPrefix { .. } => "MissingLengthPrefix",
        FormatError::TruncatedRsaPart { .. } => "TruncatedRsaPart",
        FormatError::TruncatedTag { .. } => "TruncatedTag",
        FormatError::KeySizeMismatch { .. } => "KeySizeMismatch",
        FormatError::WrongKeyOrLabel => "WrongKeyOrLabel",
        FormatError::Tampered => "Tampered",
        _ => "other",
    }
}

#[test]
fn every_vector_opens_or_is_refused_as_recorded() {
    let all = vectors();
    let (mut good, mut bad) = (0, 0);
    let mut scopes_and_sizes = std::collections::BTreeSet::new();
    for v in &all {
        let name = v["name"].as_str().unwrap();
        let pem = common::vector_key_pem(v["key"].as_str().unwrap());
        let key = PrivateKey::from_pem(&pem).unwrap();
        let oracle = common::oracle_private_key(&pem);
        let text = sealed_text(v);
        let label = label(v);
        let result =
            format::decode_base64(&text).and_then(|bytes| format::open(&key, &bytes, &label));

        if let Some(expected) = v["expect_error"].as_str() {
            assert!(name.starts_with("fail_"), "{name}");
            let err = match result {
                Ok(_) => panic!("{name}: opened, but must be refused with {expected}"),
                Err(err) => err,
            };
            assert_eq!(error_kind(&err), expected, "{name}: {err}");
            let message = err.to_string();
            assert!(
                message.contains("seal it again")
                    || message.contains("another key")
                    || message.contains("another name"),
                "{name}: the message must say what to do: {message}"
            );
            if let Ok(bytes) = format::decode_base64(&text) {
                assert!(
                    common::oracle_open(&oracle, &bytes, &label).is_none(),
                    "{name}: oracle opened it"
                );
            }
            bad += 1;
            continue;
        }

        let plaintext = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        match v["plaintext_hex"].as_str() {
            Some(hex_text) => assert_eq!(hex::encode(plaintext.expose()), hex_text, "{name}"),
            None => {
                assert_eq!(
                    plaintext.expose(),
                    common::pattern_1mib().as_slice(),
                    "{name}"
                );
                assert_eq!(
                    common::sha256_hex(plaintext.expose()),
                    v["plaintext_sha256"].as_str().unwrap()
                );
            }
        }
        let bytes = format::decode_base64(&text).unwrap();
        assert_eq!(
            common::oracle_open(&oracle, &bytes, &label).as_deref(),
            Some(plaintext.expose()),
            "{name}: oracle disagrees"
        );
        scopes_and_sizes.insert((
            v["scope"].as_str().unwrap().to_owned(),
            key.public_key().bits(),
        ));
        good += 1;
    }
    assert_eq!(
        scopes_and_sizes.len(),
        6,
        "every scope for 2048 and 4096 bits"
    );
    assert!(good >= 19 && bad >= 14, "good {good}, bad {bad}");
}

#[test]
fn a_good_vector_fails_under_every_other_label() {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "strict-ascii-4096")
        .unwrap();
    let key = PrivateKey::from_pem(&common::vector_key_pem("rsa4096.pem")).unwrap();
    let bytes = format::decode_base64(&sealed_text(&v)).unwrap();
    for scope in [Scope::NamespaceWide, Scope::ClusterWide] {
        let err = format::open(&key, &bytes, &scope.label("payments", "db-credentials")).err();
        assert_eq!(err, Some(FormatError::WrongKeyOrLabel));
    }
    let renamed = Scope::Strict.label("payments", "renamed");
    assert_eq!(
        format::open(&key, &bytes, &renamed).err(),
        Some(FormatError::WrongKeyOrLabel)
    );
}

#[test]
fn truncation_at_every_length_is_a_clean_error() {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "strict-non-ascii-2048")
        .unwrap();
    let key = PrivateKey::from_pem(&common::vector_key_pem("rsa2048.pem")).unwrap();
    let bytes = format::decode_base64(&sealed_text(&v)).unwrap();
    let label = label(&v);
    assert!(format::open(&key, &bytes, &label).is_ok());
    for len in 0..bytes.len() {
        let err = format::open(&key, &bytes[..len], &label)
            .err()
            .expect("a truncated value must not open");
        let expected = match len {
            0 | 1 => "MissingLengthPrefix",
            l if l < 2 + 256 => "TruncatedRsaPart",
            l if l < 2 + 256 + 16 => "TruncatedTag",
            _ => "Tampered",
        };
        assert_eq!(error_kind(&err), expected, "length {len}");
    }
}
