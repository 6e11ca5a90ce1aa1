//! Checking one file: its documents, and every encrypted field of every SealedSecret.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::cache::FileCache;
use super::diag::{Attribution, Code, Finding, Suppression};
use super::keyring::KnownKey;
use super::{FieldReport, IGNORE_ANNOTATION, ScanOptions};
use crate::format::{self, FormatError, Scope};
use crate::manifest::{Document, SealedSecret, split_documents};
use crate::store::GenerationState;

#[derive(Default)]
pub(super) struct FileResult {
    pub findings: Vec<Finding>,
    pub fields: Vec<FieldReport>,
    pub field_count: usize,
    pub sealed_secrets: usize,
}

pub(super) fn file_error(file: &str, message: String) -> Finding {
    Finding {
        code: Code::Malformed,
        severity: Code::Malformed.default_severity(),
        file: file.to_owned(),
        line: 1,
        document: None,
        field: None,
        message,
        help: "make the file readable, or list it in .kvsealignore".into(),
        attribution: None,
        suppressed: None,
    }
}

/// Enough of any document to tell what it is without reading secret values.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ShapeMeta>,
    #[serde(default)]
    data: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    #[serde(default)]
    string_data: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

#[derive(Deserialize, Default)]
struct ShapeMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

pub(super) fn check_file(
    path: &Path,
    file: &str,
    options: &ScanOptions<'_>,
    cache: Option<&FileCache<'_>>,
) -> FileResult {
    let mut result = FileResult::default();
    let text = match std::fs::read(path) {
        // The file may be a plaintext Secret: keep it in zeroizing memory.
        Ok(bytes) => crate::secret::SecretBytes::new(bytes),
        Err(e) => {
            result
                .findings
                .push(file_error(file, format!("cannot read the file: {e}")));
            return result;
        }
    };
    let Ok(text) = std::str::from_utf8(text.expose()) else {
        result
            .findings
            .push(file_error(file, "the file is not UTF-8 text".into()));
        return result;
    };
    let targets = Targets::for_file(path, options);
    for doc in split_documents(text) {
        let mentions_sealed_secret = doc.text.contains("SealedSecret");
        let shape: Shape = match doc.parse() {
            Ok(shape) => shape,
            Err(e) if mentions_sealed_secret => {
                result.findings.push(document_finding(
                    file,
                    &doc,
                    None,
                    Code::Malformed,
                    e.message.clone(),
                    "fix the YAML, or seal the Secret again with `kvseal seal`",
                ));
                continue;
            }
            // Not a Kubernetes object kvseal cares about (a Helm template, say).
            Err(_) => continue,
        };
        let ignores = ignores(shape.metadata.as_ref().and_then(|m| m.annotations.as_ref()));
        let mut findings = Vec::new();
        match shape.kind.as_deref() {
            Some("SealedSecret") => {
                result.sealed_secrets += 1;
                result.field_count += count_fields(&doc);
                check_sealed_secret(
                    file,
                    &doc,
                    &targets,
                    options,
                    cache,
                    &mut findings,
                    &mut result.fields,
                );
            }
            Some("Secret") => {
                let has_data = shape.data.as_ref().is_some_and(|d| !d.is_empty())
                    || shape.string_data.as_ref().is_some_and(|d| !d.is_empty());
                if has_data {
                    let meta = shape.metadata.as_ref();
                    let name = meta.and_then(|m| m.name.clone()).unwrap_or_default();
                    let namespace = meta.and_then(|m| m.namespace.clone()).unwrap_or_default();
                    findings.push(document_finding(file, &doc, Some(format!("{namespace}/{name}")), Code::PlaintextSecret,
                        format!("Secret {namespace}/{name} is committed with its values in plain text"),
                        "seal it (`kvseal seal --all-clusters -f FILE -w sealed.yaml`), delete the plain file, and rotate the values: they are in Git history"));
                }
            }
            _ => {}
        }
        for mut finding in findings {
            if let Some(reason) = ignores.get(finding.code.as_str()) {
                finding.suppressed = Some(Suppression::Inline(reason.clone()));
            }
            result.findings.push(finding);
        }
    }
    result
}

fn count_fields(doc: &Document<'_>) -> usize {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        #[serde(default)]
        encrypted_data: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    }
    #[derive(Deserialize, Default)]
    struct Shape {
        #[serde(default)]
        spec: Option<Spec>,
    }
    doc.parse::<Shape>()
        .ok()
        .and_then(|s| s.spec)
        .and_then(|s| s.encrypted_data)
        .map_or(0, |d| d.len())
}

fn ignores(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let Some(value) = annotations.and_then(|a| a.get(IGNORE_ANNOTATION)) else {
        return BTreeMap::new();
    };
    value
        .split(';')
        .filter_map(|item| {
            let (code, reason) = item.split_once(':').unwrap_or((item, ""));
            let code = code.trim();
            (!code.is_empty()).then(|| (code.to_owned(), reason.trim().to_owned()))
        })
        .collect()
}

fn document_finding(
    file: &str,
    doc: &Document<'_>,
    document: Option<String>,
    code: Code,
    message: String,
    help: &str,
) -> Finding {
    Finding {
        code,
        severity: code.default_severity(),
        file: file.to_owned(),
        line: doc.line,
        document,
        field: None,
        message,
        help: help.to_owned(),
        attribution: None,
        suppressed: None,
    }
}

/// The clusters a file deploys to, grouped by key set.
pub(crate) struct Targets {
    /// Key set → its clusters that the file deploys to. Empty when unmapped.
    pub(crate) by_keyset: BTreeMap<String, Vec<String>>,
    /// Whether a configuration exists but no pattern matches the file.
    pub(crate) unmapped: bool,
}

impl Targets {
    pub(crate) fn for_file(path: &Path, options: &ScanOptions<'_>) -> Self {
        let Some(config) = options.config else {
            return Self {
                by_keyset: BTreeMap::new(),
                unmapped: false,
            };
        };
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let relative = absolute.strip_prefix(&config.base_dir).unwrap_or(&absolute);
        let mut by_keyset: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for cluster in config.clusters_for_path(relative) {
            by_keyset
                .entry(cluster.keyset.clone())
                .or_default()
                .push(cluster.name.clone());
        }
        let unmapped = by_keyset.is_empty();
        Self {
            by_keyset,
            unmapped,
        }
    }

    fn expects(&self, key: &KnownKey) -> bool {
        self.by_keyset.contains_key(&key.keyset)
    }
}

fn field_line(doc: &Document<'_>, field: &str) -> usize {
    let mut in_encrypted = false;
    for (i, line) in doc.text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("encryptedData") || trimmed.starts_with("\"encryptedData\"") {
            in_encrypted = true;
            continue;
        }
        if in_encrypted {
            let key = trimmed.trim_start_matches('"').trim_start_matches('\'');
            if key.starts_with(field)
                && key[field.len()..]
                    .trim_start_matches(['"', '\''])
                    .starts_with(':')
            {
                return doc.text_line + i;
            }
        }
    }
    doc.line
}

/// Where findings about one SealedSecret go.
struct DocumentContext<'a> {
    file: &'a str,
    line: usize,
    document: String,
    target_clusters: String,
    findings: Vec<Finding>,
}

impl DocumentContext<'_> {
    fn report(
        &mut self,
        code: Code,
        field: Option<(&str, usize)>,
        attribution: Option<Attribution>,
        message: String,
        help: String,
    ) {
        let (field, line) = match field {
            Some((name, line)) => (Some(name.to_owned()), line),
            None => (None, self.line),
        };
        self.findings.push(Finding {
            code,
            severity: code.default_severity(),
            file: self.file.to_owned(),
            line,
            document: Some(self.document.clone()),
            field,
            message,
            help,
            attribution,
            suppressed: None,
        });
    }

    fn reseal_help(&self) -> String {
        if self.target_clusters.is_empty() {
            return format!(
                "seal it again with the right certificate: `kvseal seal --cert CERT --merge-into {} ...`",
                self.file
            );
        }
        format!(
            "seal it again for its clusters: `kvseal seal --cluster {} --merge-into {} ...` (or `kvseal reseal`)",
            self.target_clusters, self.file
        )
    }
}

fn check_sealed_secret(
    file: &str,
    doc: &Document<'_>,
    targets: &Targets,
    options: &ScanOptions<'_>,
    cache: Option<&FileCache<'_>>,
    findings: &mut Vec<Finding>,
    fields: &mut Vec<FieldReport>,
) {
    let sealed = match SealedSecret::from_document(doc) {
        Ok(sealed) => sealed,
        Err(e) => {
            findings.push(document_finding(
                file,
                doc,
                None,
                Code::Malformed,
                e.message,
                "fix the SealedSecret, or seal the Secret again with `kvseal seal`",
            ));
            return;
        }
    };
    let mut cx = DocumentContext {
        file,
        line: doc.line,
        document: format!("{}/{}", sealed.metadata.namespace, sealed.metadata.name),
        target_clusters: targets
            .by_keyset
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        findings: Vec::new(),
    };
    if targets.unmapped {
        cx.report(
            Code::Unmapped,
            None,
            None,
            format!(
                "no cluster's path patterns match {file}, so kvseal cannot tell which key it needs"
            ),
            "add the path to a cluster's `paths` (or `shared_paths`) in kvseal.toml".into(),
        );
    }
    let mut entries: Vec<(&String, &String)> = sealed.spec.encrypted_data.iter().collect();
    entries.sort();
    // The fields of one SealedSecret are nearly always sealed with one certificate, so the
    // key that opened one field is tried first for the next.
    let mut sibling_key = None;
    for (name, value) in entries {
        let line = field_line(doc, name);
        let at = Some((name.as_str(), line));
        let opened = open_field(&sealed, value, targets, options, cache, sibling_key);
        if let Opened::With { key, .. } = &opened {
            sibling_key = Some(key.fingerprint);
        }
        let attribution = match opened {
            Opened::Malformed(e) => {
                cx.report(
                    Code::Malformed,
                    at,
                    None,
                    format!("{name}: {e}"),
                    "seal the value again with `kvseal seal`".into(),
                );
                None
            }
            Opened::NoKey => {
                let message = if options.keyring.keys.is_empty() {
                    format!("{name}: no keys to check it against")
                } else {
                    format!(
                        "{name}: no known key decrypts it under any scope; it was sealed with a key kvseal does not know (a controller-minted key, or another cluster's)"
                    )
                };
                let help = cx.reseal_help();
                cx.report(Code::UnknownKey, at, None, message, help);
                None
            }
            Opened::NoAnnotation => {
                cx.report(Code::Unverified, at, None,
                    format!("{name}: no private keys and no {} annotation, so the key that sealed it cannot be told", crate::manifest::KVSEAL_FINGERPRINT_ANNOTATION),
                    "run the scan with access to the key store, or seal with kvseal so that the sealing key is recorded".into());
                None
            }
            Opened::With {
                key,
                scope,
                verified,
                plaintext: _,
            } => {
                let attribution = Attribution {
                    keyset: key.keyset.clone(),
                    generation: key.generation,
                    scope,
                    verified,
                };
                check_opened(
                    &mut cx,
                    &sealed,
                    name,
                    line,
                    key,
                    &attribution,
                    targets,
                    options,
                );
                Some(attribution)
            }
        };
        if options.collect_fields {
            fields.push(FieldReport {
                file: file.to_owned(),
                line,
                document: cx.document.clone(),
                field: name.clone(),
                attribution,
            });
        }
    }
    findings.append(&mut cx.findings);
}

/// Checks a field that opened: the label, the clusters that need it, and the key's state.
#[allow(clippy::too_many_arguments)]
fn check_opened(
    cx: &mut DocumentContext<'_>,
    sealed: &SealedSecret,
    name: &str,
    line: usize,
    key: &KnownKey,
    attribution: &Attribution,
    targets: &Targets,
    options: &ScanOptions<'_>,
) {
    let at = Some((name, line));
    let declared = sealed.scope();
    let key_name = key.describe();
    match attribution.scope {
        Some(scope) if scope == declared => {}
        Some(scope) => {
            let label = scope.label(&sealed.metadata.namespace, &sealed.metadata.name);
            let label = String::from_utf8_lossy(&label).into_owned();
            cx.report(Code::ScopeMismatch, at, Some(attribution.clone()),
                format!("{name}: sealed for {scope} scope (label {label:?}) with {key_name}, but the SealedSecret declares {declared} scope; the controller will not decrypt it"),
                format!("set the scope annotation to {scope}, or seal it again with `--scope {declared}`"));
            return;
        }
        None => {
            let help = cx.reseal_help();
            cx.report(Code::ScopeMismatch, at, Some(attribution.clone()),
                format!("{name}: sealed with {key_name}, but for another name or namespace than {} (renamed or moved?); the controller will not decrypt it", cx.document),
                help);
            return;
        }
    }
    let missing: Vec<(&String, &Vec<String>)> = targets
        .by_keyset
        .iter()
        .filter(|(keyset, _)| **keyset != key.keyset)
        .collect();
    if !missing.is_empty() {
        let clusters: Vec<String> = missing
            .iter()
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        let keysets: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
        let help = if targets.expects(key) {
            "the file deploys to clusters of several key sets, and one ciphertext opens with only one: move it to per-cluster overlays".to_owned()
        } else {
            cx.reseal_help()
        };
        cx.report(Code::WrongKey, at, Some(attribution.clone()),
            format!("{name}: decrypts only with {key_name}, which clusters {} do not load (they use key set {})", clusters.join(", "), keysets.join(", ")),
            help);
        return;
    }
    let state_finding = match key.state {
        Some(GenerationState::Retired) => Some((
            Code::RetiredKey,
            format!(
                "{name}: sealed with {key_name}, which is retired and no longer loaded by clusters"
            ),
        )),
        Some(GenerationState::Compromised) => Some((
            Code::CompromisedKey,
            format!(
                "{name}: sealed with {key_name}, which is marked compromised; rotate the value itself too"
            ),
        )),
        Some(GenerationState::Staged) => Some((
            Code::StagedKey,
            format!(
                "{name}: sealed with {key_name}, which is staged: clusters are still loading it, and one that has not will fail to decrypt this"
            ),
        )),
        Some(GenerationState::Retained) => {
            let period = options
                .config
                .and_then(|c| c.keysets.get(&key.keyset))
                .and_then(|k| k.rotation_period);
            let period = period.and_then(|p| time::Duration::try_from(p).ok());
            match (period, key.not_before) {
                (Some(period), Some(start)) if options.now - start > period => Some((
                    Code::StaleKey,
                    format!(
                        "{name}: sealed with {key_name}, which is not active and is {} days old (rotation period {} days)",
                        (options.now - start).whole_days(),
                        period.whole_days()
                    ),
                )),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some((code, message)) = state_finding {
        let help = cx.reseal_help();
        cx.report(code, at, Some(attribution.clone()), message, help);
    }
    let recorded = sealed
        .recorded_fingerprint()
        .filter(|fp| attribution.verified && *fp != key.fingerprint);
    if let Some(recorded) = recorded {
        let named = options
            .keyring
            .by_fingerprint(recorded)
            .map_or_else(|| recorded.to_string(), KnownKey::describe);
        cx.report(
            Code::AnnotationMismatch,
            at,
            Some(attribution.clone()),
            format!(
                "{name}: the {} annotation names {named}, but {key_name} decrypts it",
                crate::manifest::KVSEAL_FINGERPRINT_ANNOTATION
            ),
            "seal the document again with `kvseal seal` so that the annotation is right".into(),
        );
    }
}

pub(crate) enum Opened<'k> {
    Malformed(FormatError),
    NoKey,
    NoAnnotation,
    With {
        key: &'k KnownKey,
        scope: Option<Scope>,
        verified: bool,
        /// The decrypted value, when a private key opened it.
        plaintext: Option<crate::secret::SecretBytes>,
    },
}

/// Finds the key and label that open a field. Candidate keys are tried in the order most
/// likely to succeed (the recorded key, then what the target clusters load), and each costs
/// one private operation whatever the label; see `format::unwrap_any_label`.
pub(crate) fn open_field<'k>(
    sealed: &SealedSecret,
    value: &str,
    targets: &Targets,
    options: &'k ScanOptions<'_>,
    cache: Option<&FileCache<'_>>,
    sibling_key: Option<crate::keys::Fingerprint>,
) -> Opened<'k> {
    let bytes = match format::decode_base64(value) {
        Ok(bytes) => bytes,
        Err(e) => return Opened::Malformed(e),
    };
    let envelope = match format::Envelope::parse(&bytes) {
        Ok(envelope) => envelope,
        Err(e) => return Opened::Malformed(e),
    };
    let keyring = options.keyring;
    if !keyring.has_private_keys() {
        return match sealed.recorded_fingerprint() {
            Some(fp) => match keyring.by_fingerprint(fp) {
                Some(key) => Opened::With {
                    key,
                    scope: Some(sealed.scope()),
                    verified: false,
                    plaintext: None,
                },
                None => Opened::NoKey,
            },
            None => Opened::NoAnnotation,
        };
    }
    let declared = sealed.scope();
    let (namespace, name) = (&sealed.metadata.namespace, &sealed.metadata.name);
    let mut scopes = vec![declared];
    scopes.extend(Scope::ALL.into_iter().filter(|s| *s != declared));
    let hashes: Vec<(Scope, [u8; 32])> = scopes
        .iter()
        .map(|s| (*s, format::label_hash(&s.label(namespace, name))))
        .collect();

    let value_hash = cache.map(|_| super::cache::value_hash(&bytes));
    if let (Some(cache), Some(value_hash)) = (cache, &value_hash) {
        match cache.lookup(value_hash) {
            Some(super::cache::Cached::OpenedBy(fingerprint, label_hash)) => {
                if let Some(key) = keyring.by_fingerprint(fingerprint) {
                    let scope = hashes
                        .iter()
                        .find(|(_, h)| *h == label_hash)
                        .map(|(s, _)| *s);
                    return Opened::With {
                        key,
                        scope,
                        verified: true,
                        plaintext: None,
                    };
                }
            }
            Some(super::cache::Cached::NoKey) => return Opened::NoKey,
            None => {}
        }
    }
    let remember = |private: &crate::keys::PrivateKey, label_hash: [u8; 32]| {
        if let (Some(cache), Some(value_hash)) = (cache, value_hash) {
            cache.record(value_hash, private.fingerprint(), label_hash);
        }
    };

    // Only keys whose modulus matches the RSA part can have sealed it.
    let mut candidates: Vec<(&KnownKey, &crate::keys::PrivateKey)> = keyring
        .keys
        .iter()
        .filter_map(|k| k.private.as_ref().map(|p| (k, p)))
        .filter(|(_, p)| p.public_key().bits() / 8 == envelope.rsa_ciphertext.len())
        .collect();
    let recorded = sealed.recorded_fingerprint();
    candidates.sort_by_key(|(k, _)| {
        (
            Some(k.fingerprint) != recorded,
            Some(k.fingerprint) != sibling_key,
            !targets.expects(k),
            !k.state.is_some_and(GenerationState::is_loaded),
            k.state != Some(GenerationState::Active),
        )
    });
    for (key, private) in candidates {
        match format::unwrap_any_label(private, envelope.rsa_ciphertext) {
            Ok(unwrapped) => {
                let scope = hashes
                    .iter()
                    .find(|(_, h)| *h == unwrapped.label_hash)
                    .map(|(s, _)| *s);
                match format::open_with_session_key(&unwrapped.session_key, envelope.aes_ciphertext)
                {
                    Ok(plaintext) => {
                        remember(private, unwrapped.label_hash);
                        return Opened::With {
                            key,
                            scope,
                            verified: true,
                            plaintext: Some(plaintext),
                        };
                    }
                    // The right key and label, but the data was altered.
                    Err(e) if scope.is_some() => return Opened::Malformed(e),
                    // An OAEP block that parsed by chance under the wrong key.
                    Err(_) => {}
                }
            }
            Err(FormatError::RawUnavailable) => {
                for &(scope, _) in &hashes {
                    let label = scope.label(namespace, name);
                    if let Ok(session) =
                        format::unwrap_session_key(private, envelope.rsa_ciphertext, &label)
                    {
                        return match format::open_with_session_key(
                            &session,
                            envelope.aes_ciphertext,
                        ) {
                            Ok(plaintext) => {
                                remember(private, format::label_hash(&label));
                                Opened::With {
                                    key,
                                    scope: Some(scope),
                                    verified: true,
                                    plaintext: Some(plaintext),
                                }
                            }
                            Err(e) => Opened::Malformed(e),
                        };
                    }
                }
            }
            Err(_) => {}
        }
    }
    if let (Some(cache), Some(value_hash)) = (cache, value_hash) {
        cache.record_no_key(value_hash);
    }
    Opened::NoKey
}
