//! The wrong-key scanner: walks a repository, finds every SealedSecret and every plain
//! Secret with data, works out which clusters each file deploys to, and checks every
//! encrypted field against the keys those clusters load. It returns findings; it never prints.

mod cache;
pub(crate) mod check;
mod diag;
mod keyring;
mod walk;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use time::OffsetDateTime;

use crate::config::Config;

pub use cache::VerifiedCache;
pub use diag::{Attribution, Code, Finding, Severity, Suppression};
pub use keyring::{Keyring, KnownKey};
pub use walk::find_manifest_files;

/// Annotation that suppresses findings on one document: `"<code>: <reason>"`, several
/// separated by `;`.
pub const IGNORE_ANNOTATION: &str = "kvseal.dev/ignore";

/// What to scan with.
pub struct ScanOptions<'a> {
    /// The configuration, when there is one (clusters, path patterns, severities).
    pub config: Option<&'a Config>,
    /// The keys.
    pub keyring: &'a Keyring,
    /// Paths are reported relative to this directory.
    pub root: PathBuf,
    /// The time staleness is measured against.
    pub now: OffsetDateTime,
    /// Fingerprints of findings to suppress (from a baseline file).
    pub baseline: std::collections::BTreeSet<String>,
    /// Called after each file with (files done, files in all), from any thread.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// The verified-result cache, if one is used (not for re-sealing, which needs plaintext).
    pub cache: Option<&'a VerifiedCache>,
    /// Keep a [`FieldReport`] for every field (memory grows with the repository); otherwise
    /// only findings are kept.
    pub collect_fields: bool,
}

/// Which key opened one field: what `kvseal scan` reports even when nothing is wrong.
#[derive(Clone, Debug)]
pub struct FieldReport {
    /// File, relative to the root.
    pub file: String,
    /// One-based line of the field.
    pub line: usize,
    /// `namespace/name`.
    pub document: String,
    /// The field.
    pub field: String,
    /// The key and label that opened it, if any.
    pub attribution: Option<Attribution>,
}

/// The outcome of a scan.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Every finding, sorted by file and line; suppressed ones included and marked.
    pub findings: Vec<Finding>,
    /// Every encrypted field and what opened it, when [`ScanOptions::collect_fields`] is set.
    pub fields: Vec<FieldReport>,
    /// Encrypted fields checked.
    pub field_count: usize,
    /// Files read.
    pub files: usize,
    /// SealedSecret documents checked.
    pub sealed_secrets: usize,
    /// Whether results are proven by decryption (false in public-certificate mode).
    pub verified: bool,
    /// RSA private-key operations the scan made.
    pub private_operations: u64,
}

impl ScanReport {
    /// The findings that count (not suppressed) at or above `severity`.
    pub fn failing(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.suppressed.is_none() && f.severity >= severity)
    }
}

/// Scans files (or directories, walked with `.gitignore` respected) and returns what it found.
/// A file that cannot be read or parsed is a finding; it never stops the scan.
pub fn scan(paths: &[PathBuf], options: &ScanOptions<'_>) -> ScanReport {
    let operations_before = crate::keys::private_operations();
    let (files, walk_errors) = find_manifest_files(paths);
    let root = std::fs::canonicalize(&options.root).unwrap_or_else(|_| options.root.clone());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<check::FileResult> = files
        .par_iter()
        .map(|path| {
            let result = check::check_file(path, &display_path(path, &root), options);
            if let Some(progress) = options.progress {
                progress(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    files.len(),
                );
            }
            result
        })
        .collect();

    let mut report = ScanReport {
        files: files.len(),
        verified: options.keyring.has_private_keys(),
        ..Default::default()
    };
    for (path, message) in walk_errors {
        report
            .findings
            .push(check::file_error(&display_path(&path, &root), message));
    }
    for result in results {
        report.findings.extend(result.findings);
        report.fields.extend(result.fields);
        report.sealed_secrets += result.sealed_secrets;
        report.field_count += result.field_count;
    }
    for finding in &mut report.findings {
        if let Some(severity) = options
            .config
            .and_then(|c| c.severity_overrides.get(&finding.code))
        {
            finding.severity = *severity;
        }
        if finding.suppressed.is_none() && options.baseline.contains(&finding.fingerprint()) {
            finding.suppressed = Some(Suppression::Baseline);
        }
    }
    report.private_operations = crate::keys::private_operations() - operations_before;
    report.findings.sort_by(|a, b| {
        (&a.file, a.line, &a.field, a.code).cmp(&(&b.file, b.line, &b.field, b.code))
    });
    report
        .fields
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
}

/// `path` relative to `root` (already absolute) where it lies below it.
fn display_path(path: &Path, root: &Path) -> String {
    let path_abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match path_abs.strip_prefix(root) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
