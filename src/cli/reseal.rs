//! `kvseal reseal`: re-encrypt SealedSecrets in place with each key set's active generation.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use kvseal::reseal::{self, ResealOptions};
use kvseal::scan::{Keyring, ScanOptions};
use time::OffsetDateTime;

use super::ConfigSource;

/// The command line.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (default: the current directory).
    paths: Vec<PathBuf>,

    /// Re-seal every field, not only those sealed with a non-active generation.
    #[arg(long)]
    all: bool,

    /// List what would change, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args, source: &ConfigSource) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let config = match source.is_explicit() {
        true => source.load()?,
        false => {
            let start = paths
                .first()
                .filter(|p| p.is_dir())
                .cloned()
                .unwrap_or_else(|| PathBuf::from("."));
            kvseal::config::Config::discover(&std::fs::canonicalize(&start)?)?
        }
    };
    let store = config.store.open()?;
    let keyring = Keyring::from_store(&config, store.as_ref())?;
    if !keyring.has_private_keys() {
        bail!(
            "{} holds no private keys; re-sealing needs them to decrypt",
            store.describe()
        );
    }
    let scan = ScanOptions {
        config: Some(&config),
        keyring: &keyring,
        root: config.base_dir.clone(),
        now: OffsetDateTime::now_utc(),
        baseline: Default::default(),
        collect_fields: false,
        progress: None,
        cache: None,
    };
    let report = reseal::reseal(
        &paths,
        &scan,
        ResealOptions {
            all: args.all,
            dry_run: args.dry_run,
        },
    );
    let verb = if args.dry_run {
        "would re-seal"
    } else {
        "re-sealed"
    };
    for (file, fields) in &report.changed {
        for f in fields {
            eprintln!(
                "{verb} {file}: {} {} ({} -> {})",
                f.document, f.field, f.from, f.to
            );
        }
    }
    for s in &report.skipped {
        let what = s
            .what
            .as_deref()
            .map(|w| format!(" {w}"))
            .unwrap_or_default();
        eprintln!("skipped {}{what}: {}", s.file, s.reason);
    }
    let fields: usize = report.changed.iter().map(|(_, f)| f.len()).sum();
    eprintln!(
        "{verb} {fields} field(s) in {} file(s); {} left alone",
        report.changed.len(),
        report.skipped.len()
    );
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILURE)
    })
}
