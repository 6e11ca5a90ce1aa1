//! The wrong-key scanner: walks a repository, finds every SealedSecret and every plain
//! Secret with data, works out which clusters each file deploys to, and checks every
//! encrypted field against the keys those clusters load. It returns findings; it never prints.

mod cache;
pub(crate) mod check;
mod diag;
mod keyring;
mod walk;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::config::Config;

pub use cache::VerifiedCache;
pub use diag::{Attribution, Code, Finding, Severity, Suppression};
pub use keyring::{Keyring, KnownKey};
pub use walk::{Walked, find_manifest_files, walk_manifest_files};

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
    /// Called after each file is reported with (files done, files in all), on the thread
    /// that runs the scan.
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

/// What the scan found in one file (or in one path the walk could not enter). Outcomes
/// arrive in walk order, with severities and suppressions applied and findings sorted.
#[derive(Debug, Default)]
pub struct FileOutcome {
    /// The file, relative to the root.
    pub file: String,
    /// Its findings, suppressed ones included and marked.
    pub findings: Vec<Finding>,
    /// Its encrypted fields and what opened them, when [`ScanOptions::collect_fields`] is set.
    pub fields: Vec<FieldReport>,
}

/// Counts over a whole scan: all a report needs once the files have gone by.
#[derive(Clone, Debug, Default)]
pub struct ScanSummary {
    /// Files read.
    pub files: usize,
    /// SealedSecret documents checked.
    pub sealed_secrets: usize,
    /// Encrypted fields checked.
    pub field_count: usize,
    /// Whether results are proven by decryption (false in public-certificate mode).
    pub verified: bool,
    /// RSA private-key operations the scan made.
    pub private_operations: u64,
    /// Findings that count, by severity: errors, warnings, notes.
    pub errors: usize,
    /// See `errors`.
    pub warnings: usize,
    /// See `errors`.
    pub notes: usize,
    /// Findings suppressed by an inline annotation.
    pub suppressed_inline: usize,
    /// Findings suppressed by the baseline.
    pub suppressed_by_baseline: usize,
}

impl ScanSummary {
    /// Findings that count (not suppressed) at or above `severity`.
    pub fn failing(&self, severity: Severity) -> usize {
        match severity {
            Severity::Error => self.errors,
            Severity::Warning => self.errors + self.warnings,
            Severity::Note => self.errors + self.warnings + self.notes,
        }
    }

    fn count(&mut self, finding: &Finding) {
        match (&finding.suppressed, finding.severity) {
            (Some(Suppression::Inline(_)), _) => self.suppressed_inline += 1,
            (Some(Suppression::Baseline), _) => self.suppressed_by_baseline += 1,
            (None, Severity::Error) => self.errors += 1,
            (None, Severity::Warning) => self.warnings += 1,
            (None, Severity::Note) => self.notes += 1,
        }
    }
}

/// A whole scan held in memory: for callers that want every finding at once (tests,
/// `kvseal reseal`). `kvseal scan` streams instead, with [`scan_each`].
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Every finding, in walk order; suppressed ones included and marked.
    pub findings: Vec<Finding>,
    /// Every encrypted field and what opened it, when [`ScanOptions::collect_fields`] is set.
    pub fields: Vec<FieldReport>,
    /// The counts.
    pub summary: ScanSummary,
}

impl ScanReport {
    /// The findings that count (not suppressed) at or above `severity`.
    pub fn failing(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.suppressed.is_none() && f.severity >= severity)
    }
}

/// Scans files (or directories, walked with `.gitignore` respected) and returns everything
/// it found. Memory grows with the findings; see [`scan_each`] for a scan that does not.
pub fn scan(paths: &[PathBuf], options: &ScanOptions<'_>) -> ScanReport {
    let mut findings = Vec::new();
    let mut fields = Vec::new();
    let summary = scan_each(paths, options, &mut |outcome| {
        findings.extend(outcome.findings);
        fields.extend(outcome.fields);
    });
    ScanReport {
        findings,
        fields,
        summary,
    }
}

/// Which SealedSecret files each generation opens, by (key set, generation): the
/// attribution that retiring or replacing a generation must respect. Scans the whole
/// repository (the directory of `kvseal.toml`), with private keys, so it is definitive for
/// every generation whose key the keyring holds.
pub fn generation_usage(
    config: &Config,
    keyring: &Keyring,
    now: OffsetDateTime,
) -> std::collections::BTreeMap<(String, u32), Vec<String>> {
    let options = ScanOptions {
        config: Some(config),
        keyring,
        root: config.base_dir.clone(),
        now,
        baseline: Default::default(),
        progress: None,
        cache: None,
        collect_fields: true,
    };
    let mut usage: std::collections::BTreeMap<(String, u32), Vec<String>> = Default::default();
    scan_each(
        std::slice::from_ref(&config.base_dir),
        &options,
        &mut |outcome| {
            for field in outcome.fields {
                let Some(attribution) = field.attribution else {
                    continue;
                };
                let Some(generation) = attribution.generation else {
                    continue;
                };
                let files = usage.entry((attribution.keyset, generation)).or_default();
                if files.last() != Some(&field.file) {
                    files.push(field.file);
                }
            }
        },
    );
    usage
}

/// Files checked ahead of the one being reported, per thread: enough that no thread waits
/// for a slow file, few enough that memory stays that of a handful of files.
const AHEAD_PER_THREAD: usize = 32;

struct Job<'c> {
    index: usize,
    path: PathBuf,
    file: String,
    cache: Option<cache::FileCache<'c>>,
}

/// A checked file (or a walk error) waiting for its turn to be reported.
struct Checked<'c> {
    file: String,
    result: check::FileResult,
    /// The file's cache entries, written back in walk order.
    cache: Option<cache::FileCache<'c>>,
    /// False for a path the walk could not enter: not a file read.
    read: bool,
}

/// Scans files (or directories, walked with `.gitignore` respected) and hands each file's
/// outcome to `on_file` in walk order, as soon as the files before it are done. Memory does
/// not grow with the repository: paths are walked lazily, a bounded number of files is
/// checked ahead, and nothing is kept after `on_file` returns. A file that cannot be read or
/// parsed is a finding; it never stops the scan.
pub fn scan_each(
    paths: &[PathBuf],
    options: &ScanOptions<'_>,
    on_file: &mut dyn FnMut(FileOutcome),
) -> ScanSummary {
    let operations_before = crate::keys::private_operations();
    let root = std::fs::canonicalize(&options.root).unwrap_or_else(|_| options.root.clone());
    // Counting the files first is a cheap walk, and only a progress bar needs it.
    let total = options.progress.map_or(0, |_| {
        walk::walk_manifest_files(paths)
            .filter(|w| matches!(w, walk::Walked::File(_)))
            .count()
    });
    if let Some(cache) = options.cache {
        cache.use_keys(
            options
                .keyring
                .keys
                .iter()
                .filter_map(|k| k.private.as_ref()),
        );
    }
    let mut summary = ScanSummary {
        verified: options.keyring.has_private_keys(),
        ..Default::default()
    };
    let mut emit = |mut outcome: FileOutcome, summary: &mut ScanSummary| {
        for finding in &mut outcome.findings {
            if let Some(severity) = options
                .config
                .and_then(|c| c.severity_overrides.get(&finding.code))
            {
                finding.severity = *severity;
            }
            if finding.suppressed.is_none() && options.baseline.contains(&finding.fingerprint()) {
                finding.suppressed = Some(Suppression::Baseline);
            }
            summary.count(finding);
        }
        outcome
            .findings
            .sort_by(|a, b| (a.line, &a.field, a.code).cmp(&(b.line, &b.field, b.code)));
        on_file(outcome);
    };

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let window = threads * AHEAD_PER_THREAD;
    let (job_tx, job_rx) = std::sync::mpsc::channel::<Job<'_>>();
    let (result_tx, result_rx) = std::sync::mpsc::channel::<(usize, Checked<'_>)>();
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let result_tx = result_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                loop {
                    let Ok(Ok(job)) = job_rx.lock().map(|rx| rx.recv()) else {
                        return;
                    };
                    let result =
                        check_file_or_report_bug(&job.path, &job.file, options, job.cache.as_ref());
                    let checked = Checked {
                        file: job.file,
                        result,
                        cache: job.cache,
                        read: true,
                    };
                    if result_tx.send((job.index, checked)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(result_tx);

        let mut walk = walk::walk_manifest_files(paths);
        let mut sent = 0;
        let mut emitted = 0;
        let mut waiting: std::collections::BTreeMap<usize, Checked<'_>> = Default::default();
        let mut walk_done = false;
        loop {
            while !walk_done && sent - emitted < window {
                match walk.next() {
                    Some(walk::Walked::File(path)) => {
                        let file = display_path(&path, &root);
                        let cache = options.cache.map(|c| c.for_file(&file));
                        let job = Job {
                            index: sent,
                            path,
                            file,
                            cache,
                        };
                        if job_tx.send(job).is_err() {
                            walk_done = true;
                        }
                        sent += 1;
                    }
                    Some(walk::Walked::Error(path, message)) => {
                        let file = display_path(&path, &root);
                        let mut result = check::FileResult::default();
                        result.findings.push(check::file_error(&file, message));
                        let checked = Checked {
                            file,
                            result,
                            cache: None,
                            read: false,
                        };
                        waiting.insert(sent, checked);
                        sent += 1;
                    }
                    None => walk_done = true,
                }
            }
            while let Some(checked) = waiting.remove(&emitted) {
                emitted += 1;
                let result = checked.result;
                summary.files += usize::from(checked.read);
                summary.sealed_secrets += result.sealed_secrets;
                summary.field_count += result.field_count;
                if let (Some(cache), Some(file_cache)) = (options.cache, checked.cache) {
                    cache.finish_file(file_cache);
                }
                emit(
                    FileOutcome {
                        file: checked.file,
                        findings: result.findings,
                        fields: result.fields,
                    },
                    &mut summary,
                );
                if let Some(progress) = options.progress {
                    progress(summary.files, total.max(summary.files));
                }
            }
            if walk_done && emitted == sent {
                break;
            }
            match result_rx.recv() {
                Ok((index, result)) => {
                    waiting.insert(index, result);
                }
                Err(_) => break,
            }
        }
        drop(job_tx);
    });
    summary.private_operations = crate::keys::private_operations() - operations_before;
    summary
}

/// Checks one file; a bug that panics becomes a finding about that file instead of ending
/// the scan (or leaving it waiting for a result that never comes).
fn check_file_or_report_bug(
    path: &Path,
    file: &str,
    options: &ScanOptions<'_>,
    cache: Option<&cache::FileCache<'_>>,
) -> check::FileResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check::check_file(path, file, options, cache)
    }))
    .unwrap_or_else(|_| {
        let mut result = check::FileResult::default();
        result.findings.push(check::file_error(
            file,
            "kvseal failed on this file (a bug: please report it with the file's structure, not its values)".into(),
        ));
        result
    })
}

/// `path` relative to `root` (already absolute) where it lies below it.
fn display_path(path: &Path, root: &Path) -> String {
    let path_abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match path_abs.strip_prefix(root) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
