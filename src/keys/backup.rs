//! Private-key files in every shape kubeseal's `--recovery-private-key` accepts.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Certificate, KeyError, PrivateKey};
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
    Ok(read_key_material(bytes)?.keys)
}

/// Private keys and the certificates that came with them, in file order.
pub struct KeyMaterial {
    /// The private keys.
    pub keys: Vec<PrivateKey>,
    /// Every certificate found beside them (`tls.crt`, or `CERTIFICATE` PEM blocks).
    pub certificates: Vec<Certificate>,
}

/// [`read_private_keys`], keeping the certificates too: what `kvseal keys import` needs
/// to keep the controller's NotBefore order.
pub fn read_key_material(bytes: &[u8]) -> Result<KeyMaterial, KeyError> {
    match PrivateKey::from_pem(bytes) {
        Ok(key) => {
            let certificates = super::pem::pem_blocks(bytes)
                .filter_map(Result::ok)
                .filter(|b| b.label == "CERTIFICATE")
                .map(|b| Certificate::from_der(b.der.expose()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| KeyError::Backup(format!("a CERTIFICATE block: {e}")))?;
            return Ok(KeyMaterial {
                keys: vec![key],
                certificates,
            });
        }
        Err(KeyError::NoPrivateKey) => {}
        Err(other) => return Err(other),
    }
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NoPrivateKey)?;
    let mut material = KeyMaterial {
        keys: Vec::new(),
        certificates: Vec::new(),
    };
    for doc in split_documents(text) {
        let parsed: KeySecretDoc = doc.parse().map_err(|e| KeyError::Backup(e.to_string()))?;
        collect(&parsed, &mut material)?;
    }
    if material.keys.is_empty() {
        return Err(KeyError::NoPrivateKey);
    }
    Ok(material)
}

fn collect(doc: &KeySecretDoc, material: &mut KeyMaterial) -> Result<(), KeyError> {
    if doc.kind == "List" || !doc.items.is_empty() {
        for item in &doc.items {
            collect(item, material)?;
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
    material.keys.push(PrivateKey::from_pem(pem.expose())?);
    if let Some(encoded) = doc.data.get("tls.crt") {
        let pem = crate::format::decode_base64(encoded.expose())
            .map_err(|e| KeyError::Backup(format!("data.tls.crt of Secret {name:?}: {e}")))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| KeyError::Backup(format!("data.tls.crt of Secret {name:?}: {e}")))?;
        material.certificates.push(certificate);
    }
    Ok(())
}
