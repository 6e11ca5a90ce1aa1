//! Findings: stable codes, severities the configuration can override, and where they are.

use std::fmt;
use std::str::FromStr;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing.
    Note,
    /// Should be fixed.
    Warning,
    /// Will break a deployment or leak a secret.
    Error,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "note" => Ok(Severity::Note),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            other => Err(format!(
                "unknown severity {other:?}: use error, warning or note"
            )),
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $name:literal, $severity:ident, $description:literal;)*) => {
        /// What a finding is about. The kebab-case names are stable: CI configurations,
        /// baselines and inline ignores refer to them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $(#[doc = $description] $variant,)*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable kebab-case name.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The severity unless the configuration overrides it.
            pub fn default_severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// One line on what the code means.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $description,)* }
            }
        }

        impl FromStr for Code {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Code::$variant),)*
                    other => Err(format!("unknown finding code {other:?}")),
                }
            }
        }
    };
}

codes! {
    WrongKey = "wrong-key", Error, "Decrypts only with a key that a target cluster does not load.";
    UnknownKey = "unknown-key", Error, "No known key decrypts it: a controller-minted key, or a foreign cluster's.";
    ScopeMismatch = "scope-mismatch", Error, "Decrypts with the right key, but under another label than its metadata implies (renamed, moved, or a wrong scope annotation).";
    RetiredKey = "retired-key", Error, "Sealed with a retired generation, which clusters no longer load.";
    CompromisedKey = "compromised-key", Error, "Sealed with a generation marked compromised.";
    StagedKey = "staged-key", Error, "Sealed with a staged generation, which some cluster may not have loaded yet; it seals only after `kvseal keys promote`.";
    StaleKey = "stale-key", Warning, "Sealed with a non-active generation older than the key set's rotation period.";
    PlaintextSecret = "plaintext-secret", Error, "A plain Secret with data is committed to the repository.";
    Malformed = "malformed", Error, "Bad base64, truncated data, a wrong length prefix, YAML that does not parse, or a SealedSecret missing required fields.";
    Unmapped = "unmapped", Warning, "No cluster path pattern matches the file.";
    Unverified = "unverified", Warning, "Public-certificate mode, and no sealing-key annotation to go on.";
    AnnotationMismatch = "annotation-mismatch", Warning, "The sealing-key annotation names another key than the one that decrypts it.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which key opened a field, and under which label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    /// Key set, or the key file's name for `--key` files.
    pub keyset: String,
    /// Generation, when the key comes from a store.
    pub generation: Option<u32>,
    /// The scope whose label worked; `None` when the label matches none of the document's
    /// own (it was sealed for another name or namespace).
    pub scope: Option<crate::format::Scope>,
    /// False in public-certificate mode: taken from the annotation, not proven by decryption.
    pub verified: bool,
}

impl fmt::Display for Attribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.generation {
            Some(g) => write!(f, "{} generation {g}", self.keyset),
            None => write!(f, "{}", self.keyset),
        }
    }
}

/// Why a finding does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Suppression {
    /// A `kvseal.dev/ignore` annotation on the document, with its reason.
    Inline(String),
    /// Listed in the baseline file.
    Baseline,
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// What it is.
    pub code: Code,
    /// How serious, after configuration overrides.
    pub severity: Severity,
    /// The file, relative to the scan root where possible.
    pub file: String,
    /// One-based line.
    pub line: usize,
    /// `namespace/name` of the document, when known.
    pub document: Option<String>,
    /// The `encryptedData` (or `data`) key, when the finding is about one field.
    pub field: Option<String>,
    /// What is wrong, for a person. Never contains a secret.
    pub message: String,
    /// The command or change that fixes it.
    pub help: String,
    /// Which key opened the field, if any did.
    pub attribution: Option<Attribution>,
    /// Set when an inline ignore or the baseline covers it.
    pub suppressed: Option<Suppression>,
}

impl Finding {
    /// A stable identity for baselines and SARIF `partialFingerprints`: code, file, document
    /// and field, but not the line, so that edits above it do not change it.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            self.code,
            self.file,
            self.document.as_deref().unwrap_or_default(),
            self.field.as_deref().unwrap_or_default()
        );
        hex::encode(
            &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref()[..16],
        )
    }
}
