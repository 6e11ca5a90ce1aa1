//! kvseal's runtime backend (aws-lc-rs) against the RustCrypto oracle, in both directions,
//! for every scope and for the value shapes users seal.

mod common;

use std::collections::BTreeMap;

use kvseal::format::{self, Scope, SessionKey};
use kvseal::keys::{PrivateKey, PublicKey};
use kvseal::manifest::{SealOptions, SealedSecret, Secret, SecretOptions, split_documents};
use kvseal::secret::SecretBytes;

fn values() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("ascii", b"hunter2".to_vec()),
        ("non-ascii", "пароль — 密码 — 🔐".as_bytes().to_vec()),
        ("1KiB", (0..1024u32).map(|i| (i % 251) as u8).collect()),
        ("1MiB", common::pattern_1mib()),
    ]
}

fn keys() -> Vec<(PrivateKey, rsa::RsaPrivateKey)> {
    ["rsa2048.pem", "rsa4096.pem"]
        .into_iter()
        .map(|name| {
            let pem = common::vector_key_pem(name);
            (
                PrivateKey::from_pem(&pem).unwrap(),
                common::oracle_private_key(&pem),
            )
        })
        .collect()
}

#[test]
fn kvseal_seals_and_the_oracle_opens() {
    for (key, oracle) in keys() {
        for scope in Scope::ALL {
            let label = scope.label("team-a", "api-token");
            for (name, value) in values() {
                let sealed =
                    format::seal(key.public_key(), &value, &label, &SessionKey::generate())
                        .unwrap();
                let opened = common::oracle_open(&oracle, &sealed, &label);
                assert_eq!(
                    opened.as_deref(),
                    Some(value.as_slice()),
                    "{name}, {scope}, {} bits",
                    key.public_key().bits()
                );
                let other = Scope::Strict.label("team-b", "api-token");
                assert!(
                    common::oracle_open(&oracle, &sealed, &other).is_none(),
                    "{name}: wrong label opened"
                );
            }
        }
    }
}

#[test]
fn the_oracle_seals_and_kvseal_opens() {
    for (key, oracle) in keys() {
        let public = common::oracle_public_key(key.public_key().spki_der());
        assert_eq!(public, oracle.to_public_key());
        for scope in Scope::ALL {
            let label = scope.label("team-a", "api-token");
            for (name, value) in values() {
                let sealed = common::oracle_seal(&public, &value, &label);
                let opened = format::open(&key, &sealed, &label)
                    .unwrap_or_else(|e| panic!("{name}, {scope}: {e}"));
                assert_eq!(opened.expose(), value.as_slice(), "{name}, {scope}");
            }
        }
    }
}

#[test]
fn fixed_session_key_gives_a_stable_aes_part() {
    // With the session key fixed, the AES-GCM part is deterministic; check it against the
    // oracle's AES-GCM directly so that nonce and tag layout cannot drift.
    use aes_gcm::aead::{Aead, KeyInit};
    let (key, _) = keys().remove(0);
    let session = [7u8; 32];
    let sealed = format::seal(
        key.public_key(),
        b"payload",
        b"",
        &SessionKey::from_bytes(session),
    )
    .unwrap();
    let expected = aes_gcm::Aes256Gcm::new_from_slice(&session)
        .unwrap()
        .encrypt(&aes_gcm::Nonce::default(), b"payload".as_slice())
        .unwrap();
    assert_eq!(&sealed[2 + 256..], expected.as_slice());
    assert_eq!(&sealed[..2], &256u16.to_be_bytes());
}

#[test]
fn sealed_secret_documents_open_under_the_label_their_own_metadata_implies() {
    let (key, oracle) = keys().remove(1);
    let public: &PublicKey = key.public_key();
    for scope in Scope::ALL {
        let mut data = BTreeMap::new();
        data.insert("password".to_owned(), SecretBytes::copy_from(b"p@ss"));
        data.insert("user".to_owned(), SecretBytes::copy_from(b"admin"));
        let secret = Secret::from_values("db", "shop", data)
            .prepare(
                0,
                &SecretOptions {
                    scope: Some(scope),
                    ..Default::default()
                },
            )
            .unwrap();
        let sealed = SealedSecret::seal(
            &secret,
            public,
            SealOptions {
                record_fingerprint: true,
            },
        )
        .unwrap();
        // Round-trip through the rendered YAML, as the controller would read it.
        let yaml = sealed.render(kvseal::manifest::OutputFormat::Yaml);
        let docs = split_documents(&yaml);
        let reread = SealedSecret::from_document(&docs[0]).unwrap();
        assert_eq!(reread.scope(), scope);
        assert_eq!(reread.recorded_fingerprint(), Some(public.fingerprint()));
        let label = reread.label();
        for (field, value) in &reread.spec.encrypted_data {
            let bytes = format::decode_base64(value).unwrap();
            let plain = common::oracle_open(&oracle, &bytes, &label).expect("oracle opens field");
            let expected: &[u8] = if field == "password" {
                b"p@ss"
            } else {
                b"admin"
            };
            assert_eq!(plain, expected);
        }
        let unsealed = reread.unseal(std::slice::from_ref(&key)).unwrap();
        assert_eq!(unsealed.data["user"].expose(), b"admin");
    }
}

#[test]
fn deprecated_whole_secret_format_and_template_data() {
    let (key, _) = keys().remove(1);
    let public = common::oracle_public_key(key.public_key().spki_der());

    // The deprecated format: the whole Secret as JSON, sealed as one value in spec.data.
    let inner = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"shop","labels":{"a":"b"}},"data":{"user":"YWRtaW4="},"type":"Opaque"}"#;
    let whole = common::oracle_seal(&public, inner, b"shop/db");
    let doc = format!(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  data: {}\n",
        format::encode_base64(&whole)
    );
    let sealed = SealedSecret::from_document(&split_documents(&doc)[0]).unwrap();
    let secret = sealed.unseal(std::slice::from_ref(&key)).unwrap();
    assert_eq!(secret.data["user"].expose(), b"admin");
    assert_eq!(secret.metadata.labels["a"], "b");
    assert_eq!(secret.secret_type.as_deref(), Some("Opaque"));

    // Template data: literals are copied, Go templates are reported and left out.
    let user = common::oracle_seal(&public, b"admin", b"shop/db");
    let doc = format!(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  encryptedData:\n    user: {}\n  template:\n    data:\n      literal: plain\n      dsn: 'postgres://{{{{ .user }}}}@db'\n",
        format::encode_base64(&user)
    );
    let sealed = SealedSecret::from_document(&split_documents(&doc)[0]).unwrap();
    let secret = sealed.unseal(std::slice::from_ref(&key)).unwrap();
    assert_eq!(secret.data["literal"].expose(), b"plain");
    assert!(!secret.data.contains_key("dsn"));
    assert!(
        secret
            .warnings
            .iter()
            .any(|w| w.contains("spec.template.data.dsn") && w.contains("not render"))
    );
}
