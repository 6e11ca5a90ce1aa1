//! Command-line interface: one module per subcommand, each with its `Args` and `run`.

mod cert;
mod cluster;
mod io;
mod keys;
mod manifests;
mod reseal;
mod scan;
mod seal;
mod unseal;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kvseal::config::Config;

/// Exit status for a command that failed.
pub const EXIT_FAILURE: u8 = 1;

/// Seal Secrets for every cluster of a fleet, and manage the Sealed Secrets keys behind them.
#[derive(clap::Parser)]
#[command(name = "kvseal", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (default: kvseal.toml in this or the nearest parent directory).
    #[arg(long, global = true, value_name = "FILE", env = "KVSEAL_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Turn Secrets into SealedSecrets for one cluster, several, or a certificate.
    Seal(seal::Args),
    /// Decrypt SealedSecrets with private keys and print the Secrets the controller would create.
    Unseal(unseal::Args),
    /// Find SealedSecrets that their clusters cannot decrypt, and plaintext Secrets.
    Scan(scan::Args),
    /// Re-encrypt SealedSecrets in place with each key set's active generation.
    Reseal(reseal::Args),
    /// Generate, rotate, promote, retire, import, list and export key generations.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Write what each cluster applies to load its keys from Key Vault (CSI driver).
    Manifests(manifests::Args),
    /// Read and load live clusters' keys through the Kubernetes API (kubeconfig contexts).
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// Fetch the certificate a cluster's controller seals with.
    #[command(subcommand)]
    Cert(cert::Command),
    /// Ask a cluster's controller whether it can decrypt SealedSecrets (/v1/verify).
    Validate(validate::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = ConfigSource(cli.config);
    match cli.command {
        Command::Seal(args) => seal::run(args, &config),
        Command::Unseal(args) => unseal::run(args, &config),
        Command::Keys(command) => keys::run(command, &config),
        Command::Scan(args) => scan::run(args, &config),
        Command::Reseal(args) => reseal::run(args, &config),
        Command::Manifests(args) => manifests::run(args, &config),
        Command::Cluster(command) => cluster::run(command, &config),
        Command::Cert(command) => cert::run(command, &config),
        Command::Validate(args) => validate::run(args, &config),
    }
}

/// `--fail-on`: the least severity that makes a report command exit 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Note,
}

impl FailOn {
    /// The severity it stands for.
    pub fn severity(self) -> kvseal::scan::Severity {
        match self {
            FailOn::Error => kvseal::scan::Severity::Error,
            FailOn::Warning => kvseal::scan::Severity::Warning,
            FailOn::Note => kvseal::scan::Severity::Note,
        }
    }
}

/// `-o yaml|json`, as kubeseal spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAML, each document starting with `---`.
    #[default]
    Yaml,
    /// Indented JSON.
    Json,
}

impl From<Format> for kvseal::manifest::OutputFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Yaml => Self::Yaml,
            Format::Json => Self::Json,
        }
    }
}

/// Where the configuration comes from; loaded only by commands that need it.
pub struct ConfigSource(Option<PathBuf>);

impl ConfigSource {
    /// Loads the configuration, or explains how to provide one.
    pub fn load(&self) -> anyhow::Result<Config> {
        match &self.0 {
            Some(path) => Ok(Config::load(path)?),
            None => {
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                Ok(Config::discover(&cwd)?)
            }
        }
    }

    /// Whether `--config` was given.
    pub fn is_explicit(&self) -> bool {
        self.0.is_some()
    }

    /// Loads the configuration if one was given or can be found.
    pub fn load_optional(&self) -> anyhow::Result<Option<Config>> {
        match self.load() {
            Ok(config) => Ok(Some(config)),
            Err(e)
                if self.0.is_none()
                    && e.downcast_ref::<kvseal::config::ConfigError>()
                        .is_some_and(|e| matches!(e, kvseal::config::ConfigError::NotFound(_))) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
