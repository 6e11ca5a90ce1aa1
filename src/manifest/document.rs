//! Splitting YAML and JSON streams into documents, each with its line number.

use std::fmt;

use serde::Deserialize;

/// One document of a stream. Its `Debug` leaves the text out: it may be a plaintext Secret.
#[derive(Clone)]
pub struct Document<'a> {
    /// Zero-based position among the non-empty documents of the stream.
    pub index: usize,
    /// One-based line where the document's content starts.
    pub line: usize,
    /// The document's text.
    pub text: &'a str,
    /// One-based line of the file where `text` begins (comments and blank lines included).
    pub text_line: usize,
    /// Whether the document is JSON rather than YAML.
    pub is_json: bool,
}

impl fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("index", &self.index)
            .field("line", &self.line)
            .field("is_json", &self.is_json)
            .finish_non_exhaustive()
    }
}

/// A document that does not parse as the type asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("document {index} (line {line}): {message}")]
pub struct DocumentError {
    /// Zero-based document index.
    pub index: usize,
    /// One-based line of the document's start.
    pub line: usize,
    /// What the parser said.
    pub message: String,
}

/// kubeseal's `-o` formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// YAML, each document starting with `---`.
    #[default]
    Yaml,
    /// Indented JSON.
    Json,
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Yaml => "yaml",
            OutputFormat::Json => "json",
        })
    }
}

/// The `apiVersion` and `kind` of a document, read before the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypeMeta {
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub api_version: String,
    #[serde(default, deserialize_with = "super::null_as_default")]
    pub kind: String,
    #[serde(default, rename = "spec", deserialize_with = "is_present")]
    pub has_spec: bool,
}

fn is_present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl Document<'_> {
    /// Deserializes the document into `T`. YAML scalars are read as the typed field asks,
    /// so `no` stays the string "no" where a string is expected.
    pub fn parse<'de, T: Deserialize<'de>>(&'de self) -> Result<T, DocumentError> {
        let absolute = |line: usize| line + self.text_line - 1;
        let result = if self.is_json {
            serde_json::from_str(self.text).map_err(|e| {
                // serde_json quotes offending values, which may be secrets: say only what
                // kind of problem it is, and where.
                let what = match e.classify() {
                    serde_json::error::Category::Syntax => "invalid JSON syntax",
                    serde_json::error::Category::Eof => "the JSON ends early",
                    serde_json::error::Category::Data => "a field is missing or has the wrong type",
                    serde_json::error::Category::Io => "the JSON could not be read",
                };
                format!("line {}, column {}: {what}", absolute(e.line()), e.column())
            })
        } else {
            serde_saphyr::from_str(self.text).map_err(|e| {
                let text = e.render_with_formatter(&serde_saphyr::UserMessageFormatter);
                let mut message = first_line(&text);
                message = message
                    .strip_prefix("error: ")
                    .unwrap_or(&message)
                    .to_owned();
                if let Some((_, rest)) = message
                    .strip_prefix("line ")
                    .and_then(|r| r.split_once(": "))
                {
                    message = rest.to_owned();
                }
                match e.location() {
                    Some(at) => format!(
                        "line {}, column {}: {message}",
                        absolute(at.line() as usize),
                        at.column()
                    ),
                    None => message,
                }
            })
        };
        result.map_err(|message| self.error(message))
    }

    /// An error about this document.
    pub fn error(&self, message: impl Into<String>) -> DocumentError {
        DocumentError {
            index: self.index,
            line: self.line,
            message: message.into(),
        }
    }

    pub(crate) fn type_meta(&self) -> Result<TypeMeta, DocumentError> {
        self.parse::<TypeMeta>()
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_owned()
}

/// Splits a stream into documents as `k8s.io/apimachinery`'s YAML-or-JSON decoder does:
/// a stream whose first non-blank character is `{` or `[` is JSON (several objects may
/// follow each other), otherwise YAML separated by `---` lines. Empty documents are skipped.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        split_json(text)
    } else {
        split_yaml(text)
    }
}

fn split_json(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    loop {
        let begin = start + text[start..].len() - text[start..].trim_start().len();
        match stream.next() {
            Some(Ok(_)) => {
                let end = stream.byte_offset();
                docs.push(json_doc(text, begin, end, docs.len()));
                start = end;
            }
            Some(Err(_)) => {
                // Hand the rest over as one document so that parsing reports the error.
                docs.push(json_doc(text, begin, text.len(), docs.len()));
                break;
            }
            None => break,
        }
    }
    docs
}

fn json_doc(text: &str, begin: usize, end: usize, index: usize) -> Document<'_> {
    let line = line_of(text, begin);
    Document {
        index,
        line,
        text: &text[begin..end],
        text_line: line,
        is_json: true,
    }
}

fn split_yaml(text: &str) -> Vec<Document<'_>> {
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, first line)
    let (mut chunk_start, mut chunk_line, mut offset) = (0, 1, 0);
    for (line_index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = line_index + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---"
            || bare.starts_with("--- ")
            || bare.starts_with("---\t")
            || bare == "..."
            || bare.starts_with("... ");
        if is_separator {
            chunks.push((chunk_start, offset, chunk_line));
            // Content on the separator line itself ("--- {...}") stays with the next document.
            let rest = bare[3..].trim();
            if rest.is_empty() || rest.starts_with('#') {
                chunk_start = offset + line.len();
                chunk_line = line_no + 1;
            } else {
                chunk_start = offset + 3;
                chunk_line = line_no;
            }
        }
        offset += line.len();
    }
    chunks.push((chunk_start, text.len(), chunk_line));

    let mut docs = Vec::new();
    for (start, end, first_line) in chunks {
        let chunk = &text[start..end];
        let content_offset = chunk.lines().position(|line| {
            let t = line.trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
        });
        if let Some(content_offset) = content_offset {
            let index = docs.len();
            docs.push(Document {
                index,
                line: first_line + content_offset,
                text: chunk,
                text_line: first_line,
                is_json: false,
            });
        }
    }
    docs
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_stream_with_comments_and_empty_documents() {
        let text = "# c\n---\na: 1\n---\n---\n# only a comment\n---\nb: 2\n...\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[0].text.trim()), (3, "a: 1"));
        assert_eq!((docs[1].line, docs[1].text.trim()), (8, "b: 2"));
    }

    #[test]
    fn json_objects_back_to_back() {
        let docs = split_documents("{\"a\": 1}\n\n{\"b\":\n 2}");
        assert_eq!(docs.len(), 2);
        assert!(docs[1].is_json);
        assert_eq!(docs[1].line, 3);
    }
}
