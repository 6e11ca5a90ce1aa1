//! Re-encrypting SealedSecrets in place, offline, with the active generation of each
//! file's key set. Only the encrypted values (and kvseal's sealing-key annotation) change;
//! every other byte of the file is kept, and a file is written whole or not at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::format::{self, SessionKey};
use crate::manifest::{KVSEAL_FINGERPRINT_ANNOTATION, SealedSecret, split_documents};
use crate::scan::check::{Opened, Targets, open_field};
use crate::scan::{KnownKey, ScanOptions, find_manifest_files};
use crate::store::GenerationState;

/// What to re-seal.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResealOptions {
    /// Re-seal every field, not only those sealed with a non-active generation.
    pub all: bool,
    /// Work out the changes but write nothing.
    pub dry_run: bool,
}

/// One field that was (or, in a dry run, would be) re-sealed.
#[derive(Clone, Debug)]
pub struct ResealedField {
    /// `namespace/name`.
    pub document: String,
    /// The field.
    pub field: String,
    /// The generation that sealed it.
    pub from: String,
    /// The generation that seals it now.
    pub to: String,
}

/// Something kvseal left alone, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// The file.
    pub file: String,
    /// The document and field, when the reason is about one.
    pub what: Option<String>,
    /// Why, and what to do.
    pub reason: String,
}

/// The outcome of a re-seal run.
#[derive(Debug, Default)]
pub struct ResealReport {
    /// Files changed (or that would change), with their fields.
    pub changed: Vec<(String, Vec<ResealedField>)>,
    /// What was left alone.
    pub skipped: Vec<Skipped>,
}

/// Re-seals the SealedSecrets under `paths`. `options.keyring` must hold private keys.
pub fn reseal(paths: &[PathBuf], scan: &ScanOptions<'_>, options: ResealOptions) -> ResealReport {
    let (files, walk_errors) = find_manifest_files(paths);
    let mut report = ResealReport::default();
    for (path, reason) in walk_errors {
        report.skipped.push(Skipped {
            file: path.display().to_string(),
            what: None,
            reason,
        });
    }
    for path in files {
        reseal_file(&path, scan, options, &mut report);
    }
    report
}

fn active_key<'k>(scan: &'k ScanOptions<'_>, keyset: &str) -> Option<&'k KnownKey> {
    scan.keyring
        .keys
        .iter()
        .filter(|k| {
            k.keyset == keyset && k.state == Some(GenerationState::Active) && k.private.is_some()
        })
        .max_by_key(|k| k.not_before)
}

fn reseal_file(
    path: &Path,
    scan: &ScanOptions<'_>,
    options: ResealOptions,
    report: &mut ResealReport,
) {
    let file = path.display().to_string();
    let skip = |report: &mut ResealReport, what: Option<String>, reason: String| {
        report.skipped.push(Skipped {
            file: file.clone(),
            what,
            reason,
        });
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => crate::secret::SecretBytes::new(bytes),
        Err(e) => return skip(report, None, format!("cannot read it: {e}")),
    };
    let Ok(text) = std::str::from_utf8(bytes.expose()) else {
        return;
    };
    if !text.contains("SealedSecret") {
        return;
    }
    let sealed_docs: Vec<SealedSecret> = split_documents(text)
        .iter()
        .filter_map(|d| SealedSecret::from_document(d).ok())
        .collect();
    if sealed_docs.is_empty() {
        return;
    }
    let targets = Targets::for_file(path, scan);
    let keyset = match targets.by_keyset.keys().collect::<Vec<_>>().as_slice() {
        [keyset] => (*keyset).clone(),
        [] => {
            return skip(report, None,
                "no cluster's path patterns match it, so kvseal cannot tell which key set to seal for; map it in kvseal.toml".into());
        }
        several => {
            let names: Vec<&str> = several.iter().map(|k| k.as_str()).collect();
            return skip(
                report,
                None,
                format!(
                    "it deploys to clusters of key sets {}, and one ciphertext serves only one key set: move its SealedSecrets into per-cluster overlays and re-seal those",
                    names.join(", ")
                ),
            );
        }
    };
    let Some(active) = active_key(scan, &keyset) else {
        return skip(
            report,
            None,
            format!("key set {keyset} has no active generation with a private key in the store"),
        );
    };
    let Some(active_private) = &active.private else {
        return;
    };
    let active_public = active_private.public_key();

    let mut replacements: Vec<(String, String)> = Vec::new();
    let mut fields = Vec::new();
    for sealed in &sealed_docs {
        let document = format!("{}/{}", sealed.metadata.namespace, sealed.metadata.name);
        let label = sealed.label();
        let mut all_active = true;
        let mut entries: Vec<(&String, &String)> = sealed.spec.encrypted_data.iter().collect();
        entries.sort();
        for (field, value) in entries {
            match open_field(sealed, value, &targets, scan, None, None) {
                Opened::With {
                    key,
                    scope: Some(scope),
                    plaintext: Some(plaintext),
                    ..
                } if scope == sealed.scope() && key.keyset == keyset => {
                    if key.fingerprint == active.fingerprint && !options.all {
                        continue;
                    }
                    let sealed_value = match format::seal(
                        active_public,
                        plaintext.expose(),
                        &label,
                        &SessionKey::generate(),
                    ) {
                        Ok(v) => format::encode_base64(&v),
                        Err(e) => {
                            all_active = false;
                            skip(report, Some(format!("{document} {field}")), e.to_string());
                            continue;
                        }
                    };
                    replacements.push((value.clone(), sealed_value));
                    fields.push(ResealedField {
                        document: document.clone(),
                        field: field.clone(),
                        from: key.describe(),
                        to: active.describe(),
                    });
                }
                _ => {
                    all_active = false;
                    skip(report, Some(format!("{document} {field}")),
                        "it does not open with this key set under its own name, namespace and scope; `kvseal scan` says why".into());
                }
            }
        }
        let recorded = sealed
            .metadata
            .annotations
            .get(KVSEAL_FINGERPRINT_ANNOTATION);
        let new_fingerprint = active_public.fingerprint().to_string();
        if let Some(recorded) = recorded.filter(|r| all_active && **r != new_fingerprint) {
            replacements.push((recorded.clone(), new_fingerprint));
        }
    }
    if fields.is_empty() {
        return;
    }
    // Replace each old value where it stands, so that comments, key order and every other
    // byte stay as they were. A value that is not found exactly once (folded over lines, or
    // duplicated) leaves the whole file untouched.
    let mut updated = text.to_owned();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (old, _) in &replacements {
        *counts.entry(old.as_str()).or_default() += 1;
    }
    for (old, new) in &replacements {
        let Some(remaining) = counts.get_mut(old.as_str()) else {
            continue;
        };
        if updated.matches(old.as_str()).count() != *remaining {
            return skip(report, None, "an encrypted value or annotation to replace is folded over several lines or also stands elsewhere in the file, so it cannot be replaced in place; re-seal it with `kvseal seal --merge-into`".into());
        }
        updated = updated.replacen(old.as_str(), new, 1);
        *remaining -= 1;
    }
    let written = if options.dry_run {
        Ok(())
    } else {
        crate::fsutil::write_atomic(path, updated.as_bytes())
    };
    if let Err(e) = written {
        return skip(report, None, format!("cannot write it: {e}"));
    }
    report.changed.push((file, fields));
}
