//! `kvseal cert fetch`: the certificate a cluster's controller seals with, as kubeseal's
//! `--fetch-cert` gets it (through the API server's service proxy).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kvseal::fsutil::AtomicFile;

use super::ConfigSource;
use super::cluster::Reach;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the certificate the cluster's controller serves (kubeseal --fetch-cert).
    Fetch(FetchArgs),
}

/// Arguments of `kvseal cert fetch`.
#[derive(clap::Args)]
pub struct FetchArgs {
    /// The cluster, as named in kvseal.toml.
    #[arg(long)]
    cluster: String,
    #[command(flatten)]
    reach: Reach,
    /// Write the certificate to this file instead of stdout.
    #[arg(short = 'w', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(command: Command, config: &ConfigSource) -> anyhow::Result<ExitCode> {
    let Command::Fetch(args) = command;
    let config = config.load()?;
    let cluster = config.cluster(&args.cluster)?;
    let live = args.reach.connect(cluster)?;
    let certificate = live.served_certificate()?;
    let pem = certificate.to_pem();
    eprintln!(
        "{}: the controller seals with key {} (certificate valid {} to {})",
        live.target(),
        certificate.public_key().fingerprint(),
        certificate.not_before().date(),
        certificate.not_after().date()
    );
    match &args.output {
        Some(path) => {
            let mut file = AtomicFile::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            std::io::Write::write_all(&mut file, pem.as_bytes())
                .and_then(|()| file.commit())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => super::io::write_stdout(&pem)?,
    }
    Ok(ExitCode::SUCCESS)
}
