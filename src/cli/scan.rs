//! `kvseal scan`: find SealedSecrets that their clusters cannot decrypt, and plain Secrets.
//! Exit status: 0 nothing at or above --fail-on, 1 findings at or above it, 2 could not run.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kvseal::config::Config;
use kvseal::fsutil::AtomicFile;
use kvseal::report::{ReportFormat, ReportWriter};
use kvseal::scan::{self, Keyring, ScanOptions, VerifiedCache};
use time::OffsetDateTime;

use super::io::read_key_file;
use super::{ConfigSource, FailOn};

/// Exit status when the scan could not run.
const EXIT_COULD_NOT_RUN: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
    Github,
    Azure,
}

/// The command line.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to scan (default: the current directory).
    paths: Vec<PathBuf>,

    /// Private key files to check against, in any shape `kvseal unseal --key` takes, instead
    /// of the configured store. Repeatable and comma-separated.
    #[arg(long = "key", value_delimiter = ',', value_name = "FILE")]
    keys: Vec<PathBuf>,

    /// Use only the committed public certificates (no private keys): results are unverified.
    #[arg(long, conflicts_with = "keys")]
    certs_only: bool,

    /// Output format (`-o`, as in `seal` and `unseal`).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Exit 1 when a finding at or above this severity is not suppressed.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    fail_on: FailOn,

    /// Suppress the findings listed in this baseline file.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    /// Write the current findings to this baseline file.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,

    /// Scan only files changed since this git revision (for pull requests).
    #[arg(long, value_name = "REV")]
    since: Option<String>,

    /// List every encrypted field and the key that opens it (on by default without a
    /// configuration, where that is the point of the scan).
    #[arg(long)]
    fields: bool,

    /// Remember verified attributions in this file, so that re-scanning unchanged
    /// SealedSecrets costs no RSA operation (entries are authenticated with the private keys).
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,

    /// Write the report to this file instead of stdout.
    #[arg(short = 'w', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args, config: &ConfigSource) -> anyhow::Result<ExitCode> {
    match scan_and_report(args, config) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: the scan could not run: {e:#}");
            Ok(ExitCode::from(EXIT_COULD_NOT_RUN))
        }
    }
}

fn scan_and_report(args: Args, source: &ConfigSource) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let config = load_config(source, &paths)?;
    let keyring = keyring(&args, config.as_ref())?;
    let root = match &config {
        Some(config) => config.base_dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    let paths = match &args.since {
        Some(rev) => changed_since(rev, &paths)?,
        None => paths,
    };
    let baseline = match &args.baseline {
        Some(path) => read_baseline(path)?,
        None => Default::default(),
    };
    let cache = args.cache.as_deref().map(VerifiedCache::open);
    let bar = ProgressAfterOneSecond::new();
    let progress = |done: usize, total: usize| bar.update(done, total);
    let options = ScanOptions {
        config: config.as_ref(),
        keyring: &keyring,
        root,
        now: OffsetDateTime::now_utc(),
        baseline,
        collect_fields: args.fields || config.is_none(),
        progress: Some(&progress),
        cache: cache.as_ref(),
    };

    let format = match args.format {
        Format::Human => ReportFormat::Human,
        Format::Json => ReportFormat::Json,
        Format::Sarif => ReportFormat::Sarif,
        Format::Github => ReportFormat::Github,
        Format::Azure => ReportFormat::Azure,
    };
    let color = format == ReportFormat::Human
        && args.output.is_none()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal();
    // The report and the baseline are written as the scan goes; files are replaced only
    // once the scan has finished.
    let out = match &args.output {
        Some(path) => Output::File(create_atomic(path)?),
        None => Output::Stdout(std::io::stdout().lock()),
    };
    let mut report = ReportWriter::begin(out, format, color, keyring.has_private_keys())
        .context("cannot write the report")?;
    let mut baseline = match &args.write_baseline {
        Some(path) => Some(BaselineWriter::create(path)?),
        None => None,
    };
    let mut write_error: Option<std::io::Error> = None;
    let summary = scan::scan_each(&paths, &options, &mut |outcome| {
        if write_error.is_some() {
            return;
        }
        let written = report.file(&outcome).and_then(|()| match &mut baseline {
            Some(baseline) => baseline.add(&outcome.findings),
            None => Ok(()),
        });
        if let Err(e) = written {
            write_error = Some(e);
        }
    });
    bar.finish();
    if let Some(e) = write_error {
        return Err(e).context("cannot write the report");
    }
    let out = report.finish(&summary).context("cannot write the report")?;
    if let (Some(baseline), Some(path)) = (baseline, &args.write_baseline) {
        baseline
            .finish()
            .with_context(|| format!("cannot write the baseline {}", path.display()))?;
    }
    if let (Output::File(file), Some(path)) = (out, &args.output) {
        file.commit()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(cache), Some(path)) = (&cache, &args.cache)
        && let Err(e) = cache.save()
    {
        eprintln!("warning: cannot write the cache {}: {e}", path.display());
    }
    let fail_on = args.fail_on.severity();
    Ok(if summary.failing(fail_on) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--config`, or kvseal.toml found upward from the first path scanned, or from here.
fn load_config(source: &ConfigSource, paths: &[PathBuf]) -> anyhow::Result<Option<Config>> {
    if source.is_explicit() {
        return source.load().map(Some);
    }
    let start = paths.first().map(|p| {
        if p.is_dir() {
            p.clone()
        } else {
            p.parent().unwrap_or(Path::new(".")).to_path_buf()
        }
    });
    let start = std::fs::canonicalize(start.unwrap_or_else(|| PathBuf::from(".")))
        .context("cannot resolve the scan path")?;
    match Config::discover(&start) {
        Ok(config) => Ok(Some(config)),
        Err(kvseal::config::ConfigError::NotFound(_)) => source.load_optional(),
        Err(other) => Err(other.into()),
    }
}

fn keyring(args: &Args, config: Option<&Config>) -> anyhow::Result<Keyring> {
    let mut keyring = Keyring::default();
    if !args.keys.is_empty() {
        for path in &args.keys {
            keyring.add_key_file(path, read_key_file(path)?);
        }
        return Ok(keyring);
    }
    let Some(config) = config else {
        bail!(
            "no keys: pass --key FILE, or scan inside a repository whose kvseal.toml names a key store"
        );
    };
    if !args.certs_only {
        let store = config.store.open()?;
        let from_store = Keyring::from_store(config, store.as_ref())?;
        if from_store.has_private_keys() {
            return Ok(from_store);
        }
        eprintln!(
            "note: {} holds no private keys; scanning with the public certificates in {} (results are unverified)",
            store.describe(),
            config.cert_dir.display()
        );
    }
    let public = Keyring::from_cert_dir(config).map_err(anyhow::Error::msg)?;
    if public.keys.is_empty() {
        bail!(
            "no keys: the store holds no private keys and {} holds no certificates",
            config.cert_dir.display()
        );
    }
    Ok(public)
}

fn changed_since(rev: &str, paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let git = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .context("cannot run git for --since")?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?.trim());
    let changed = git(&["diff", "--name-only", "--diff-filter=ACMR", rev, "--"])?;
    let scopes: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    Ok(changed
        .lines()
        .map(|line| top.join(line))
        .filter(|p| p.is_file() && scopes.iter().any(|s| p.starts_with(s)))
        .collect())
}

fn read_baseline(path: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("baseline {} is not kvseal baseline JSON", path.display()))?;
    let list = value["findings"]
        .as_array()
        .with_context(|| format!("baseline {} has no findings list", path.display()))?;
    Ok(list
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

/// Where the report goes: stdout, or a file that replaces its target once complete.
enum Output<'a> {
    Stdout(std::io::StdoutLock<'a>),
    File(AtomicFile),
}

impl Write for Output<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            // `kvseal scan | head`: a reader that has gone is not an error; the scan still
            // finishes, for its exit status.
            Output::Stdout(out) => match out.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
                other => other,
            },
            Output::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            },
            Output::File(file) => file.flush(),
        }
    }
}

fn create_atomic(path: &Path) -> anyhow::Result<AtomicFile> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    AtomicFile::create(path).with_context(|| format!("cannot write {}", path.display()))
}

/// `--write-baseline`: the fingerprints of the current findings, streamed.
struct BaselineWriter {
    file: AtomicFile,
    first: bool,
}

impl BaselineWriter {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let mut file = create_atomic(path)?;
        write!(file, "{{\n  \"version\": 1,\n  \"findings\": [")
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { file, first: true })
    }

    fn add(&mut self, findings: &[scan::Finding]) -> std::io::Result<()> {
        for finding in findings {
            let separator = if self.first { "" } else { "," };
            self.first = false;
            let fingerprint = serde_json::to_string(&finding.fingerprint())?;
            write!(self.file, "{separator}\n    {fingerprint}")?;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        let close = if self.first { "]" } else { "\n  ]" };
        write!(self.file, "{close}\n}}\n")?;
        self.file.commit()
    }
}

/// A progress bar on stderr for scans that take longer than a second, when stderr is a
/// terminal; nothing otherwise.
struct ProgressAfterOneSecond {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl ProgressAfterOneSecond {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::hidden();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} files, {elapsed} ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            started: std::time::Instant::now(),
        }
    }

    fn update(&self, done: usize, total: usize) {
        let Some(bar) = &self.bar else { return };
        if bar.is_hidden() && self.started.elapsed() > std::time::Duration::from_secs(1) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
