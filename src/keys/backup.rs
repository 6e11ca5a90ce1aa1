//! Private-key files in every shape kubeseal's `--recovery-private-key` accepts.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{KeyError, PrivateKey};
use crate::manifest::split_documents;
use crate::secret::SecretString;

#[derive(Deserialize, Default)]
struct KeySecretDoc {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<KeySecretMeta>,
    #[serde(default, deserialize_with = "crate::manifest::null_as_default")]
    data: BTreeMap<String, SecretString>,
    #[serde(default, deserialize_with = "crate::manifest::null_as_default")]
    items: Vec<KeySecretDoc>,
}

#[derive(Deserialize, Default)]
struct KeySecretMeta {
    #[serde(default)]
    name: Option<String>,
}

/// Reads every private key in a file's bytes: PEM (PKCS#1 or PKCS#8), a Secret with a
/// `tls.key`, a `kind: List` of such Secrets (`kubectl get secret -o yaml`), or a YAML
/// stream of Secrets.
pub fn read_private_keys(bytes: &[u8]) -> Result<Vec<PrivateKey>, KeyError> {
    match PrivateKey::from_pem(bytes) {
        Ok(key) => return Ok(vec![key]),
        Err(KeyError::NoPrivateKey) => {}
        Err(other) => return Err(other),
    }
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NoPrivateKey)?;
    let mut keys = Vec::new();
    for doc in split_documents(text) {
        let parsed: KeySecretDoc = doc.parse().map_err(|e| KeyError::Backup(e.to_string()))?;
        collect(&parsed, &mut keys)?;
    }
    if keys.is_empty() {
        return Err(KeyError::NoPrivateKey);
    }
    Ok(keys)
}

fn collect(doc: &KeySecretDoc, keys: &mut Vec<PrivateKey>) -> Result<(), KeyError> {
    if doc.kind == "List" || !doc.items.is_empty() {
        for item in &doc.items {
            collect(item, keys)?;
        }
        return Ok(());
    }
    let name = doc
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let Some(encoded) = doc.data.get("tls.key") else {
        return Err(KeyError::Backup(format!(
            "the Secret {name:?} has no data.tls.key; a sealing key Secret is a kubernetes.io/tls Secret"
        )));
    };
    let pem = crate::format::decode_base64(encoded.expose())
        .map_err(|e| KeyError::Backup(format!("data.tls.key of Secret {name:?}: {e}")))?;
    let pem = crate::secret::SecretBytes::new(pem);
    keys.push(PrivateKey::from_pem(pem.expose())?);
    Ok(())
}
