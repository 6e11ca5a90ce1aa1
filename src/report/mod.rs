//! Rendering scan reports for people and for CI systems. Rendering returns text; the
//! binary decides where it goes.

use serde_json::{Value, json};

use crate::scan::{Code, Finding, ScanReport, Severity, Suppression};

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

/// Renders a report. `color` adds ANSI colours to the human format.
pub fn render(report: &ScanReport, format: ReportFormat, color: bool) -> String {
    match format {
        ReportFormat::Human => human(report, color),
        ReportFormat::Json => pretty(&json_report(report)),
        ReportFormat::Sarif => pretty(&sarif(report)),
        ReportFormat::Github => github(report),
        ReportFormat::Azure => azure(report),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

struct Counts {
    errors: usize,
    warnings: usize,
    notes: usize,
    inline: usize,
    baseline: usize,
}

fn counts(report: &ScanReport) -> Counts {
    let mut c = Counts {
        errors: 0,
        warnings: 0,
        notes: 0,
        inline: 0,
        baseline: 0,
    };
    for f in &report.findings {
        match (&f.suppressed, f.severity) {
            (Some(Suppression::Inline(_)), _) => c.inline += 1,
            (Some(Suppression::Baseline), _) => c.baseline += 1,
            (None, Severity::Error) => c.errors += 1,
            (None, Severity::Warning) => c.warnings += 1,
            (None, Severity::Note) => c.notes += 1,
        }
    }
    c
}

fn human(report: &ScanReport, color: bool) -> String {
    let paint = |code: &str, text: &str| {
        if color {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_owned()
        }
    };
    let mut out = String::new();
    let mut current_file: Option<&str> = None;
    for f in report.findings.iter().filter(|f| f.suppressed.is_none()) {
        if current_file != Some(&f.file) {
            if current_file.is_some() {
                out.push('\n');
            }
            out.push_str(&paint("1", &f.file));
            out.push('\n');
            current_file = Some(&f.file);
        }
        let level = match f.severity {
            Severity::Error => paint("31;1", "error"),
            Severity::Warning => paint("33;1", "warning"),
            Severity::Note => paint("36;1", "note"),
        };
        let document = f
            .document
            .as_deref()
            .map(|d| format!(" {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>4}: {level}[{}]{document}: {}\n",
            f.line, f.code, f.message
        ));
        out.push_str(&format!("        help: {}\n", f.help));
    }
    let c = counts(report);
    if current_file.is_some() {
        out.push('\n');
    }
    if !report.fields.is_empty() {
        out.push_str(&paint("1", "fields and the keys that open them"));
        out.push('\n');
        for f in &report.fields {
            let opened = match &f.attribution {
                Some(a) => format!(
                    "{a} ({} scope{})",
                    a.scope
                        .map_or("another name or namespace's", |s| s.as_str()),
                    if a.verified { "" } else { ", unverified" }
                ),
                None => "no known key".to_owned(),
            };
            out.push_str(&format!(
                "  {}:{} {} {}: {opened}\n",
                f.file, f.line, f.document, f.field
            ));
        }
        out.push('\n');
    }
    let fields = report.field_count;
    out.push_str(&format!(
        "{} error(s), {} warning(s), {} note(s) in {} file(s): {} SealedSecret(s), {} encrypted field(s)",
        c.errors, c.warnings, c.notes, report.files, report.sealed_secrets, fields
    ));
    if c.inline + c.baseline > 0 {
        out.push_str(&format!(
            "; suppressed: {} inline, {} by baseline",
            c.inline, c.baseline
        ));
    }
    out.push('\n');
    if !report.verified && fields > 0 {
        out.push_str("note: no private keys were available; results come from the sealing-key annotations and are unverified\n");
    }
    out
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

fn json_report(report: &ScanReport) -> Value {
    let c = counts(report);
    json!({
        "version": 1,
        "verified": report.verified,
        "summary": {
            "files": report.files,
            "sealedSecrets": report.sealed_secrets,
            "fields": report.field_count,
            "errors": c.errors,
            "warnings": c.warnings,
            "notes": c.notes,
            "suppressedInline": c.inline,
            "suppressedByBaseline": c.baseline,
            "privateKeyOperations": report.private_operations,
        },
        "findings": report.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "fields": report.fields.iter().map(|f| json!({
            "file": f.file,
            "line": f.line,
            "document": f.document,
            "field": f.field,
            "sealedWith": f.attribution.as_ref().map(attribution_json),
        })).collect::<Vec<_>>(),
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn sarif(report: &ScanReport) -> Value {
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
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
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
                    Suppression::Baseline => json!([{"kind": "external", "justification": "listed in the kvseal baseline"}]),
                };
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kvseal",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
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

fn github(report: &ScanReport) -> String {
    let mut out = String::new();
    for f in report.findings.iter().filter(|f| f.suppressed.is_none()) {
        let command = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        out.push_str(&format!(
            "::{command} file={},line={},title={}::{}\n",
            github_escape(&f.file, true),
            f.line,
            github_escape(&format!("kvseal {}", f.code), true),
            github_escape(&format!("{} Fix: {}", f.message, f.help), false)
        ));
    }
    out
}

/// Azure Pipelines' escaping for logging command properties and messages.
fn azure_escape(text: &str, property: bool) -> String {
    escape(text, if property { AZURE_PROPERTY } else { AZURE_DATA })
}

fn azure(report: &ScanReport) -> String {
    let mut out = String::new();
    for f in report.findings.iter().filter(|f| f.suppressed.is_none()) {
        // Azure Pipelines knows only errors and warnings.
        let kind = if f.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        out.push_str(&format!(
            "##vso[task.logissue type={kind};sourcepath={};linenumber={};code={};]{}\n",
            azure_escape(&f.file, true),
            f.line,
            azure_escape(f.code.as_str(), true),
            azure_escape(&format!("{} Fix: {}", f.message, f.help), false)
        ));
    }
    out
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
