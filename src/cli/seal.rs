//! `kvseal seal`: Secrets in, SealedSecrets out, for a certificate or for clusters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kvseal::fleet::{self, SealingTarget};
use kvseal::format::{self, Scope, SessionKey};
use kvseal::manifest::{
    OutputFormat, SealOptions, SealedSecret, Secret, SecretOptions, render_node, split_documents,
};
use kvseal::secret::SecretBytes;
use time::OffsetDateTime;

use super::io::{read_input, write_file, write_stdout};
use super::{ConfigSource, Format};

/// The command line; no `Debug`, because `--from-literal` carries secret values.
#[derive(clap::Args)]
pub struct Args {
    /// Secret manifest to seal: YAML or JSON, several documents allowed. Default: stdin.
    #[arg(short = 'f', long = "secret-file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Seal with this certificate (PEM), as kubeseal's --cert.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cluster", "all_clusters"])]
    cert: Option<PathBuf>,

    /// Seal for these clusters, using their key sets' committed certificates.
    #[arg(long, value_delimiter = ',', value_name = "NAME[,NAME...]")]
    cluster: Vec<String>,

    /// Seal for every configured cluster.
    #[arg(long, conflicts_with = "cluster")]
    all_clusters: bool,

    /// Scope: strict (name and namespace), namespace-wide or cluster-wide. Overrides the
    /// Secret's scope annotations.
    #[arg(long, value_name = "SCOPE")]
    scope: Option<Scope>,

    /// Output format.
    #[arg(short = 'o', long = "format", value_enum, default_value_t = Format::Yaml)]
    format: Format,

    /// Write the output to this file (atomically) instead of stdout.
    #[arg(
        short = 'w',
        long = "sealed-secret-file",
        value_name = "FILE",
        conflicts_with = "out_template"
    )]
    output: Option<PathBuf>,

    /// Write one file per cluster (a `{cluster}` placeholder) or per key set (`{keyset}`).
    #[arg(long, value_name = "PATH")]
    out_template: Option<String>,

    /// Print only the encrypted value of one item (--from-file or --from-literal).
    #[arg(long)]
    raw: bool,

    /// Secret name (required with --raw in strict scope and with --from-*).
    #[arg(long)]
    name: Option<String>,

    /// Namespace: fills a missing one, and must match the Secret's own.
    #[arg(short = 'n', long)]
    namespace: Option<String>,

    /// Add a value read from a file; KEY defaults to the file name.
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    from_file: Vec<String>,

    /// Add a literal value.
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    from_literal: Vec<String>,

    /// Merge the sealed values into this existing SealedSecret file, taking its name,
    /// namespace and scope, and keeping its format.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "out_template", "raw"])]
    merge_into: Option<PathBuf>,

    /// Seal a Secret that has no data.
    #[arg(long)]
    allow_empty_data: bool,
}

pub fn run(args: Args, config: &ConfigSource) -> anyhow::Result<std::process::ExitCode> {
    let now = OffsetDateTime::now_utc();
    let targets = resolve_targets(&args, config, now)?;
    if args.raw {
        return seal_raw(&args, &targets);
    }
    if let Some(path) = &args.merge_into {
        return merge_into(&args, path, &targets);
    }

    let secrets = read_secrets(
        &args,
        &SecretOptions {
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            scope: args.scope,
            allow_empty_data: args.allow_empty_data,
        },
    )?;
    let mut outputs = Vec::new();
    for target in &targets {
        let mut docs = String::new();
        for secret in &secrets {
            let sealed = SealedSecret::seal(
                secret,
                target.certificate.public_key(),
                SealOptions {
                    record_fingerprint: true,
                },
            )
            .with_context(|| {
                format!(
                    "cannot seal Secret {:?} for {}",
                    secret.metadata.name,
                    target.describe()
                )
            })?;
            let rendered = render_node(&sealed.to_node(), args.format.into());
            docs.push_str(&annotate_for(target, rendered.expose(), args.format.into()));
        }
        outputs.push((target, docs));
    }

    if let Some(template) = &args.out_template {
        for (target, docs) in &outputs {
            for path in template_paths(template, target)? {
                write_file(&path, docs)?;
                eprintln!("wrote {} ({})", path.display(), target.describe());
            }
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let all: String = outputs.iter().map(|(_, docs)| docs.as_str()).collect();
    match &args.output {
        Some(path) => write_file(path, &all)?,
        None => write_stdout(&all)?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn resolve_targets(
    args: &Args,
    config: &ConfigSource,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<SealingTarget>> {
    if let Some(cert) = &args.cert {
        return Ok(vec![SealingTarget::from_cert_file(cert, now)?]);
    }
    if args.cluster.is_empty() && !args.all_clusters {
        bail!("say which key seals: --cert FILE, --cluster NAME[,NAME...] or --all-clusters");
    }
    let config = config.load()?;
    let clusters: Vec<String> = if args.all_clusters {
        config.clusters.keys().cloned().collect()
    } else {
        args.cluster.clone()
    };
    if clusters.is_empty() {
        bail!("{} configures no clusters", config.path.display());
    }
    Ok(fleet::sealing_targets(&config, &clusters, now)?)
}

/// With several targets (or any cluster target) each YAML document says who it is for.
fn annotate_for(target: &SealingTarget, rendered: &str, format: OutputFormat) -> String {
    match (&target.keyset, format) {
        (Some(keyset), OutputFormat::Yaml) => {
            let body = rendered.strip_prefix("---\n").unwrap_or(rendered);
            format!(
                "---\n# kvseal: key set {keyset}, clusters {}\n{body}",
                target.clusters.join(", ")
            )
        }
        _ => rendered.to_owned(),
    }
}

fn template_paths(template: &str, target: &SealingTarget) -> anyhow::Result<Vec<PathBuf>> {
    let has_cluster = template.contains("{cluster}");
    if !has_cluster && !template.contains("{keyset}") {
        bail!("--out-template {template:?} has no {{cluster}} or {{keyset}} placeholder");
    }
    let Some(keyset) = &target.keyset else {
        bail!("--out-template needs --cluster or --all-clusters");
    };
    let template = template.replace("{keyset}", keyset);
    if !has_cluster {
        return Ok(vec![PathBuf::from(template)]);
    }
    Ok(target
        .clusters
        .iter()
        .map(|c| PathBuf::from(template.replace("{cluster}", c)))
        .collect())
}

fn read_secrets(args: &Args, options: &SecretOptions) -> anyhow::Result<Vec<Secret>> {
    if args.from_file.is_empty() && args.from_literal.is_empty() {
        let input = read_input(args.file.as_deref())?;
        let source = args
            .file
            .as_deref()
            .map_or("standard input".to_owned(), |p| p.display().to_string());
        return Secret::read_stream(input.expose(), options)
            .with_context(|| format!("in {source}"));
    }
    if args.file.is_some() {
        bail!("give either -f FILE or --from-file/--from-literal, not both");
    }
    let Some(name) = options.name.as_ref().or(args.name.as_ref()) else {
        bail!("--from-file and --from-literal need --name")
    };
    let data = literal_values(args)?;
    let secret = Secret::from_values(name, args.namespace.as_deref().unwrap_or_default(), data);
    Ok(vec![secret.prepare(0, options)?])
}

fn literal_values(args: &Args) -> anyhow::Result<BTreeMap<String, SecretBytes>> {
    let mut data = BTreeMap::new();
    for item in &args.from_literal {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--from-literal takes KEY=VALUE; the argument has no '='");
        };
        data.insert(key.to_owned(), SecretBytes::copy_from(value.as_bytes()));
    }
    for item in &args.from_file {
        let (key, path) = match item.split_once('=') {
            Some((key, path)) => (key.to_owned(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(item);
                let key = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (key, path)
            }
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read --from-file {}", path.display()))?;
        data.insert(key, SecretBytes::new(bytes));
    }
    Ok(data)
}

fn seal_raw(args: &Args, targets: &[SealingTarget]) -> anyhow::Result<std::process::ExitCode> {
    let values = literal_values(args)?;
    let (Some((_, value)), 1) = (values.iter().next(), values.len()) else {
        bail!("--raw seals exactly one value: give one --from-file or one --from-literal");
    };
    let scope = args.scope.unwrap_or_default();
    let namespace = args.namespace.clone().unwrap_or_default();
    let name = args.name.clone().unwrap_or_default();
    if scope != Scope::ClusterWide && namespace.is_empty() {
        bail!("--raw in {scope} scope needs --namespace");
    }
    if scope == Scope::Strict && name.is_empty() {
        bail!("--raw in strict scope needs --name");
    }
    let label = scope.label(&namespace, &name);
    let mut out = String::new();
    for target in targets {
        let sealed = format::seal(
            target.certificate.public_key(),
            value.expose(),
            &label,
            &SessionKey::generate(),
        )?;
        if targets.len() > 1 || target.keyset.is_some() {
            out.push_str(&format!(
                "# kvseal: {}\n{}\n",
                target.describe(),
                format::encode_base64(&sealed)
            ));
        } else {
            out.push_str(&format::encode_base64(&sealed));
        }
    }
    write_stdout(&out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn merge_into(
    args: &Args,
    path: &Path,
    targets: &[SealingTarget],
) -> anyhow::Result<std::process::ExitCode> {
    let [target] = targets else {
        bail!("--merge-into takes one key: give --cert or clusters that share one key set");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let docs = split_documents(&text);
    let [doc] = docs.as_slice() else {
        bail!(
            "{}: --merge-into needs a file with exactly one SealedSecret, found {} documents",
            path.display(),
            docs.len()
        );
    };
    let mut existing =
        SealedSecret::from_document(doc).with_context(|| format!("in {}", path.display()))?;
    let scope = existing.scope();
    if let Some(asked) = args.scope.filter(|s| *s != scope) {
        bail!(
            "{} is {scope} scope but --scope {asked} was given; --merge-into keeps the file's scope",
            path.display()
        );
    }
    let options = SecretOptions {
        name: Some(existing.metadata.name.clone()),
        namespace: Some(existing.metadata.namespace.clone()).filter(|ns| !ns.is_empty()),
        scope: Some(scope),
        allow_empty_data: args.allow_empty_data,
    };
    let mut secrets = read_secrets(args, &options)?;
    let Some(secret) = secrets.pop().filter(|_| secrets.is_empty()) else {
        bail!("--merge-into merges exactly one Secret");
    };
    let update = SealedSecret::seal(
        &secret,
        target.certificate.public_key(),
        SealOptions {
            record_fingerprint: true,
        },
    )?;
    existing.merge(update);
    let format = if doc.is_json {
        OutputFormat::Json
    } else {
        OutputFormat::Yaml
    };
    write_file(path, &existing.render(format))?;
    Ok(std::process::ExitCode::SUCCESS)
}
