//! Scan reports for people and for CI systems, written as the scan goes to whatever writer
//! the binary chooses.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::scan::{Code, FieldReport, FileOutcome, Finding, ScanSummary, Severity, Suppression};

/// Output formats of `kvseal scan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Grouped by file, for a terminal.
    Human,
    /// kvseal's JSON.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF consumers.
    Sarif,
    /// GitHub Actions workflow commands.
    Github,
    /// Azure Pipelines logging commands.
    Azure,
}

/// Writes a scan report as the scan goes: [`ReportWriter::begin`], then
/// [`ReportWriter::file`] for each file's outcome in order, then [`ReportWriter::finish`]
/// with the counts. Nothing about earlier files is kept, except the field list of the JSON
/// format (which only `--fields` fills).
pub struct ReportWriter<W: Write> {
    out: W,
    format: ReportFormat,
    color: bool,
    verified: bool,
    /// Whether a finding (JSON, SARIF) or a file group (human) has been written.
    wrote_any: bool,
    json_fields: Vec<Value>,
}

impl<W: Write> ReportWriter<W> {
    /// Writes what comes before the first file. `verified` says whether the scan decrypts.
    pub fn begin(
        mut out: W,
        format: ReportFormat,
        color: bool,
        verified: bool,
    ) -> io::Result<Self> {
        match format {
            ReportFormat::Json => {
                write!(
                    out,
                    "{{\n  \"version\": 1,\n  \"verified\": {verified},\n  \"findings\": ["
                )?;
            }
            ReportFormat::Sarif => {
                let head = json!({
                    "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                    "version": "2.1.0",
                    "runs": [{"tool": {"driver": sarif_driver()}, "results": []}],
                });
                // Everything up to the empty results array, which the findings then fill.
                let text = serde_json::to_string_pretty(&head).map_err(io::Error::other)?;
                let cut = text
                    .rfind("\"results\": []")
                    .ok_or_else(|| io::Error::other("SARIF template"))?;
                write!(out, "{}\"results\": [", &text[..cut])?;
            }
            ReportFormat::Human | ReportFormat::Github | ReportFormat::Azure => {}
        }
        Ok(Self {
            out,
            format,
            color,
            verified,
            wrote_any: false,
            json_fields: Vec::new(),
        })
    }

    /// Writes one file's findings (and fields, when collected).
    pub fn file(&mut self, outcome: &FileOutcome) -> io::Result<()> {
        match self.format {
            ReportFormat::Human => self.human_file(outcome),
            ReportFormat::Json => {
                for f in &outcome.findings {
                    self.json_element(&finding_json(f), 4)?;
                }
                self.json_fields
                    .extend(outcome.fields.iter().map(field_json));
                Ok(())
            }
            ReportFormat::Sarif => {
                for f in &outcome.findings {
                    self.json_element(&sarif_result(f), 8)?;
                }
                Ok(())
            }
            ReportFormat::Github => {
                for f in outcome.findings.iter().filter(|f| f.suppressed.is_none()) {
                    self.out.write_all(github_line(f).as_bytes())?;
                }
                Ok(())
            }
            ReportFormat::Azure => {
                for f in outcome.findings.iter().filter(|f| f.suppressed.is_none()) {
                    self.out.write_all(azure_line(f).as_bytes())?;
                }
                Ok(())
            }
        }
    }

    /// Writes the summary and whatever closes the document; returns the writer.
    pub fn finish(mut self, summary: &ScanSummary) -> io::Result<W> {
        match self.format {
            ReportFormat::Human => self.human_summary(summary)?,
            ReportFormat::Json => {
                self.close_array(2)?;
                let fields = Value::Array(std::mem::take(&mut self.json_fields));
                write!(
                    self.out,
                    ",\n  \"fields\": {},\n  \"summary\": {}\n}}\n",
                    indent(&pretty(&fields), 2),
                    indent(&pretty(&summary_json(summary)), 2)
                )?;
            }
            ReportFormat::Sarif => {
                self.close_array(6)?;
                write!(self.out, "\n    }}\n  ]\n}}\n")?;
            }
            ReportFormat::Github | ReportFormat::Azure => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// One element of the open JSON array, pretty-printed at `depth` spaces.
    fn json_element(&mut self, value: &Value, depth: usize) -> io::Result<()> {
        let separator = if self.wrote_any { "," } else { "" };
        self.wrote_any = true;
        write!(
            self.out,
            "{separator}\n{}{}",
            " ".repeat(depth),
            indent(&pretty(value), depth)
        )
    }

    /// Closes the open JSON array, whose brackets sit at `depth` spaces.
    fn close_array(&mut self, depth: usize) -> io::Result<()> {
        if self.wrote_any {
            write!(self.out, "\n{}]", " ".repeat(depth))
        } else {
            write!(self.out, "]")
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_owned()
        }
    }

    fn human_file(&mut self, outcome: &FileOutcome) -> io::Result<()> {
        let findings: Vec<&Finding> = outcome
            .findings
            .iter()
            .filter(|f| f.suppressed.is_none())
            .collect();
        if findings.is_empty() && outcome.fields.is_empty() {
            return Ok(());
        }
        let mut text = self.paint("1", &outcome.file);
        text.push('\n');
        for f in findings {
            let level = match f.severity {
                Severity::Error => self.paint("31;1", "error"),
                Severity::Warning => self.paint("33;1", "warning"),
                Severity::Note => self.paint("36;1", "note"),
            };
            let document = f
                .document
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {:>4}: {level}[{}]{document}: {}\n",
                f.line, f.code, f.message
            ));
            text.push_str(&format!("        help: {}\n", f.help));
        }
        for f in &outcome.fields {
            let opened = match &f.attribution {
                Some(a) => format!(
                    "{a} ({} scope{})",
                    a.scope
                        .map_or("another name or namespace's", |s| s.as_str()),
                    if a.verified { "" } else { ", unverified" }
                ),
                None => "no known key".to_owned(),
            };
            text.push_str(&format!(
                "  {:>4}: {} {} {}: {opened}\n",
                f.line,
                self.paint("2", "field"),
                f.document,
                f.field
            ));
        }
        text.push('\n');
        self.wrote_any = true;
        self.out.write_all(text.as_bytes())
    }

    fn human_summary(&mut self, c: &ScanSummary) -> io::Result<()> {
        let mut out = format!(
            "{} error(s), {} warning(s), {} note(s) in {} file(s): {} SealedSecret(s), {} encrypted field(s)",
            c.errors, c.warnings, c.notes, c.files, c.sealed_secrets, c.field_count
        );
        if c.suppressed_inline + c.suppressed_by_baseline > 0 {
            out.push_str(&format!(
                "; suppressed: {} inline, {} by baseline",
                c.suppressed_inline, c.suppressed_by_baseline
            ));
        }
        out.push('\n');
        if !self.verified && c.field_count > 0 {
            out.push_str("note: no private keys were available; results come from the sealing-key annotations and are unverified\n");
        }
        self.out.write_all(out.as_bytes())
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Indents every line after the first by `depth` spaces (the first sits where it is put).
fn indent(text: &str, depth: usize) -> String {
    text.replace('\n', &format!("\n{}", " ".repeat(depth)))
}

fn summary_json(c: &ScanSummary) -> Value {
    json!({
        "files": c.files,
        "sealedSecrets": c.sealed_secrets,
        "fields": c.field_count,
        "errors": c.errors,
        "warnings": c.warnings,
        "notes": c.notes,
        "suppressedInline": c.suppressed_inline,
        "suppressedByBaseline": c.suppressed_by_baseline,
        "privateKeyOperations": c.private_operations,
        "verified": c.verified,
    })
}

fn attribution_json(a: &crate::scan::Attribution) -> Value {
    json!({"keyset": a.keyset, "generation": a.generation, "scope": a.scope.map(|s| s.as_str()), "verified": a.verified})
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "code": f.code.as_str(),
        "severity": f.severity.as_str(),
        "file": f.file,
        "line": f.line,
        "document": f.document,
        "field": f.field,
        "message": f.message,
        "help": f.help,
        "sealedWith": f.attribution.as_ref().map(attribution_json),
        "suppressed": f.suppressed.as_ref().map(|s| match s {
            Suppression::Inline(reason) => json!({"by": "inline", "reason": reason}),
            Suppression::Baseline => json!({"by": "baseline"}),
        }),
        "fingerprint": f.fingerprint(),
    })
}

fn field_json(f: &FieldReport) -> Value {
    json!({
        "file": f.file,
        "line": f.line,
        "document": f.document,
        "field": f.field,
        "sealedWith": f.attribution.as_ref().map(attribution_json),
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn sarif_driver() -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|code| {
            json!({
                "id": code.as_str(),
                "shortDescription": {"text": code.description()},
                "defaultConfiguration": {"level": sarif_level(code.default_severity())},
            })
        })
        .collect();
    json!({
        "name": "kvseal",
        "version": env!("CARGO_PKG_VERSION"),
        "rules": rules,
    })
}

fn sarif_result(f: &Finding) -> Value {
    let rule_index = Code::ALL.iter().position(|c| *c == f.code).unwrap_or(0);
    let mut result = json!({
        "ruleId": f.code.as_str(),
        "ruleIndex": rule_index,
        "level": sarif_level(f.severity),
        "message": {"text": format!("{} Fix: {}", f.message, f.help)},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": f.file.replace('\\', "/")},
                "region": {"startLine": f.line.max(1)},
            }
        }],
        "partialFingerprints": {"kvsealFinding/v1": f.fingerprint()},
    });
    if let Some(s) = &f.suppressed {
        result["suppressions"] = match s {
            Suppression::Inline(reason) => json!([{"kind": "inSource", "justification": reason}]),
            Suppression::Baseline => {
                json!([{"kind": "external", "justification": "listed in the kvseal baseline"}])
            }
        };
    }
    result
}

/// Replaces characters by their escapes, as CI logging commands require.
fn escape(text: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match table.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

const GITHUB_DATA: &[(char, &str)] = &[('%', "%25"), ('\r', "%0D"), ('\n', "%0A")];
const GITHUB_PROPERTY: &[(char, &str)] = &[
    ('%', "%25"),
    ('\r', "%0D"),
    ('\n', "%0A"),
    (':', "%3A"),
    (',', "%2C"),
];
const AZURE_DATA: &[(char, &str)] = &[('%', "%AZP25"), ('\r', "%0D"), ('\n', "%0A")];
const AZURE_PROPERTY: &[(char, &str)] = &[
    ('%', "%AZP25"),
    ('\r', "%0D"),
    ('\n', "%0A"),
    (';', "%3B"),
    (']', "%5D"),
];

/// GitHub's escaping for workflow command data and properties.
fn github_escape(text: &str, property: bool) -> String {
    escape(
        text,
        if property {
            GITHUB_PROPERTY
        } else {
            GITHUB_DATA
        },
    )
}

fn github_line(f: &Finding) -> String {
    let command = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    };
    format!(
        "::{command} file={},line={},title={}::{}\n",
        github_escape(&f.file, true),
        f.line,
        github_escape(&format!("kvseal {}", f.code), true),
        github_escape(&format!("{} Fix: {}", f.message, f.help), false)
    )
}

/// Azure Pipelines' escaping for logging command properties and messages.
fn azure_escape(text: &str, property: bool) -> String {
    escape(text, if property { AZURE_PROPERTY } else { AZURE_DATA })
}

fn azure_line(f: &Finding) -> String {
    // Azure Pipelines knows only errors and warnings.
    let kind = if f.severity == Severity::Error {
        "error"
    } else {
        "warning"
    };
    format!(
        "##vso[task.logissue type={kind};sourcepath={};linenumber={};code={};]{}\n",
        azure_escape(&f.file, true),
        f.line,
        azure_escape(f.code.as_str(), true),
        azure_escape(&format!("{} Fix: {}", f.message, f.help), false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_escaping() {
        assert_eq!(github_escape("a%b\nc:d,e", true), "a%25b%0Ac%3Ad%2Ce");
        assert_eq!(github_escape("a:b,c", false), "a:b,c");
        assert_eq!(azure_escape("50%;x]\r\n", true), "50%AZP25%3Bx%5D%0D%0A");
    }
}
