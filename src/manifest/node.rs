//! A small document tree and the two writers kubeseal's output is compared against:
//! Go's `json.MarshalIndent` and go-yaml v2 as `sigs.k8s.io/yaml` drives it.
//!
//! The tree zeroes its strings on drop, because unsealed Secrets pass through it.

use std::cmp::Ordering;

use zeroize::Zeroize;

use crate::secret::SecretString;

/// A JSON-like value whose mapping keys keep the order they were inserted in
/// (Go's struct field order, which the JSON writer keeps and the YAML writer sorts).
pub enum Node {
    /// A mapping.
    Map(Vec<(String, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Node::Str(s) = self {
            s.zeroize();
        }
    }
}

impl Node {
    /// An empty mapping.
    pub fn map() -> Self {
        Node::Map(Vec::new())
    }

    /// Appends `key: value` to a mapping. Does nothing on other nodes.
    pub fn insert(&mut self, key: &str, value: Node) {
        if let Node::Map(entries) = self {
            entries.push((key.to_owned(), value));
        }
    }

    /// Appends `key: value` when `value` is `Some`.
    pub fn insert_some(&mut self, key: &str, value: Option<Node>) {
        if let Some(value) = value {
            self.insert(key, value);
        }
    }

    /// A string node.
    pub fn str(s: &str) -> Self {
        Node::Str(s.to_owned())
    }

    /// A mapping of strings, in the given order.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.clone(), Node::str(v)))
                .collect(),
        )
    }

    /// An upper bound, in practice, on the rendered size, so that output buffers are
    /// allocated once: growing a buffer would leave a copy of unsealed values behind.
    fn capacity_hint(&self) -> usize {
        match self {
            Node::Map(entries) => {
                entries
                    .iter()
                    .map(|(k, v)| 2 * k.len() + 16 + v.capacity_hint())
                    .sum::<usize>()
                    + 16
            }
            Node::Seq(items) => items.iter().map(|i| i.capacity_hint() + 16).sum::<usize>() + 16,
            Node::Str(s) => 2 * s.len() + 16,
            Node::Bool(_) => 8,
        }
    }

    /// Renders as Go's `json.MarshalIndent(v, "", "  ")` followed by a newline.
    pub fn to_json(&self) -> SecretString {
        let mut out = String::with_capacity(self.capacity_hint());
        write_json(self, 0, &mut out);
        out.push('\n');
        SecretString::new(out)
    }

    /// Renders as `sigs.k8s.io/yaml` does: keys sorted, two-space indent, block style.
    pub fn to_yaml(&self) -> SecretString {
        let mut out = String::with_capacity(self.capacity_hint());
        match self {
            Node::Map(entries) if !entries.is_empty() => write_yaml_map(entries, 0, &mut out),
            Node::Seq(items) if !items.is_empty() => write_yaml_seq(items, 0, &mut out),
            other => {
                write_yaml_inline(other, 0, false, &mut out);
                out.push('\n');
            }
        }
        SecretString::new(out)
    }
}

// ---------------------------------------------------------------------------------------
// JSON

fn write_json(node: &Node, depth: usize, out: &mut String) {
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    match node {
        Node::Map(entries) if entries.is_empty() => out.push_str("{}"),
        Node::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_json_string(key, out);
                out.push_str(": ");
                write_json(value, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
        Node::Seq(items) if items.is_empty() => out.push_str("[]"),
        Node::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_json(item, depth + 1, out);
            }
            indent(out, depth);
            out.push(']');
        }
        Node::Str(s) => write_json_string(s, out),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// Go's `encoding/json` string escaping with HTML escaping on (the default).
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// YAML

/// Sorts with go-yaml's comparator by insertion, which never panics even though that
/// comparator is not a total order for some digit-heavy keys (Rust's `sort_by` may panic
/// on such comparators), and which matches Go's result for maps of up to 12 keys exactly.
fn sorted(entries: &[(String, Node)]) -> Vec<&(String, Node)> {
    let mut sorted: Vec<_> = entries.iter().collect();
    for i in 1..sorted.len() {
        let mut j = i;
        while j > 0 && go_yaml_key_order(&sorted[j].0, &sorted[j - 1].0) == Ordering::Less {
            sorted.swap(j, j - 1);
            j -= 1;
        }
    }
    sorted
}

fn is_block_collection(node: &Node) -> bool {
    matches!(node, Node::Map(e) if !e.is_empty()) || matches!(node, Node::Seq(i) if !i.is_empty())
}

fn write_yaml_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    for (i, (key, value)) in sorted(entries).into_iter().enumerate() {
        // The first key of a mapping inside a sequence item shares the "- " line.
        if i > 0 || !out.ends_with("- ") {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        write_yaml_scalar(key, indent, true, out);
        out.push(':');
        match value {
            Node::Map(e) if !e.is_empty() => {
                out.push('\n');
                write_yaml_map(e, indent + 2, out);
            }
            Node::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_yaml_seq(items, indent, out);
            }
            other => {
                out.push(' ');
                write_yaml_inline(other, indent + 2, false, out);
                out.push('\n');
            }
        }
    }
}

fn write_yaml_seq(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str("- ");
        match item {
            Node::Map(e) if !e.is_empty() => write_yaml_map(e, indent + 2, out),
            Node::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_yaml_seq(inner, indent + 2, out);
            }
            other => {
                write_yaml_inline(other, indent + 2, false, out);
                out.push('\n');
            }
        }
    }
}

fn write_yaml_inline(node: &Node, indent: usize, simple_key: bool, out: &mut String) {
    debug_assert!(!is_block_collection(node));
    match node {
        Node::Map(_) => out.push_str("{}"),
        Node::Seq(_) => out.push_str("[]"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Str(s) => write_yaml_scalar(s, indent, simple_key, out),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// What go-yaml's `yaml_emitter_analyze_scalar` concludes about a string.
struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// go-yaml's `is_printable`: note that it excludes tab, NEL and everything outside the
/// Basic Multilingual Plane, which it escapes.
fn is_yaml_printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        && c != '\u{feff}'
}

fn is_yaml_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let is_space = |c: char| c == ' ';
    let is_break = is_yaml_break;
    let is_blankz = |c: Option<&char>| c.is_none_or(|&c| is_space(c) || c == '\t' || is_break(c));

    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut special, mut line_breaks) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;

    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blankz(chars.get(i + 1));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_yaml_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if is_space(c) {
            if i == 0 {
                leading_space = true;
            }
            if i == chars.len() - 1 {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i == chars.len() - 1 {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(&c));
    }

    let mut a = Analysis {
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space
        || leading_break
        || trailing_space
        || trailing_break
        || line_breaks
        || block_indicators
    {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    a
}

/// Whether go-yaml v2's resolver would read the plain scalar as something other than a
/// string (null, bool, int, float, timestamp, merge key), so it must be quoted.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return true;
    };
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    // go-yaml drops every underscore before trying numbers.
    let plain = s.replace('_', "");
    is_go_int(&plain) || is_yaml_float(&plain) || is_base60_float(s) || is_timestamp(s)
}

fn is_go_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_in = |t: &str, radix: u32| {
        !t.is_empty()
            && !t.starts_with('_')
            && !t.ends_with('_')
            && !t.contains("__")
            && t.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(rest) = body.strip_prefix(prefix) {
            return digits_in(rest.strip_prefix('_').unwrap_or(rest), radix);
        }
    }
    !body.is_empty() && body.chars().all(|c| c.is_ascii_digit())
}

fn is_yaml_float(s: &str) -> bool {
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let digits = |b: &[u8], i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut i = 0;
    if b.first() == Some(&b'.') {
        i = 1;
        if digits(b, &mut i) == 0 {
            return false;
        }
    } else {
        if digits(b, &mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(b, &mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(b, &mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn is_base60_float(s: &str) -> bool {
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, _) = body.split_once('.').unwrap_or((body, ""));
    if body
        .split_once('.')
        .is_some_and(|(_, frac)| !frac.chars().all(|c| c.is_ascii_digit() || c == '_'))
    {
        return false;
    }
    let mut parts = main.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    let head_ok = head.chars().next().is_some_and(|c| c.is_ascii_digit())
        && head.chars().all(|c| c.is_ascii_digit() || c == '_');
    let rest: Vec<&str> = parts.collect();
    head_ok
        && !rest.is_empty()
        && rest.iter().all(|p| {
            let b = p.as_bytes();
            match b.len() {
                1 => b[0].is_ascii_digit(),
                2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
                _ => false,
            }
        })
}

/// go-yaml v2's `parseTimestamp`: four digits and a dash, then the whole string must match
/// one of `2006-1-2T15:4:5.999999999Z07:00` (also with `t`), `2006-1-2 15:4:5.999999999`
/// or `2006-1-2`.
fn is_timestamp(s: &str) -> bool {
    fn number(s: &[u8], at: &mut usize, min: usize, max: usize) -> Option<u32> {
        let start = *at;
        while *at < s.len() && *at - start < max && s[*at].is_ascii_digit() {
            *at += 1;
        }
        let digits = &s[start..*at];
        (digits.len() >= min).then(|| {
            digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        })
    }
    fn expect(s: &[u8], at: &mut usize, byte: u8) -> Option<()> {
        (s.get(*at) == Some(&byte)).then(|| *at += 1)
    }
    let b = s.as_bytes();
    let parse = || -> Option<()> {
        let mut at = 0;
        let year = number(b, &mut at, 4, 4)?;
        expect(b, &mut at, b'-')?;
        let month = number(b, &mut at, 1, 2)?;
        expect(b, &mut at, b'-')?;
        let day = number(b, &mut at, 1, 2)?;
        let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
        let Some(&separator) = b.get(at) else {
            return Some(());
        };
        if !matches!(separator, b'T' | b't' | b' ') {
            return None;
        }
        at += 1;
        let hour = number(b, &mut at, 1, 2)?;
        expect(b, &mut at, b':')?;
        let minute = number(b, &mut at, 1, 2)?;
        expect(b, &mut at, b':')?;
        let second = number(b, &mut at, 1, 2)?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        if b.get(at) == Some(&b'.') {
            at += 1;
            number(b, &mut at, 1, 9)?;
        }
        if separator == b' ' {
            return (at == b.len()).then_some(());
        }
        match b.get(at) {
            Some(b'Z') => at += 1,
            Some(b'+' | b'-') => {
                at += 1;
                number(b, &mut at, 2, 2)?;
                expect(b, &mut at, b':')?;
                number(b, &mut at, 2, 2)?;
            }
            _ => return None,
        }
        (at == b.len()).then_some(())
    };
    parse().is_some()
}

fn choose_style(s: &str, simple_key: bool) -> Style {
    let analysis = analyze(s);
    let mut style = if s.contains('\n') {
        Style::Literal
    } else if resolves_to_non_string(s) {
        Style::DoubleQuoted
    } else {
        Style::Plain
    };
    if style == Style::Plain && (!analysis.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !analysis.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    if style == Style::Literal && (!analysis.block_allowed || simple_key) {
        style = Style::DoubleQuoted;
    }
    style
}

/// go-yaml's `best_width`: past this column, a space in a scalar becomes a line break.
const BEST_WIDTH: usize = 80;

fn current_column(out: &str) -> usize {
    out.rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count())
}

/// Breaks the line as go-yaml's `yaml_emitter_write_indent` does.
fn break_line(indent: usize, out: &mut String, column: &mut usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
    *column = indent;
}

/// Writes a scalar in the style go-yaml would choose, folding long lines at spaces as it
/// does (never in keys). `indent` is where continuation lines start.
fn write_yaml_scalar(s: &str, indent: usize, simple_key: bool, out: &mut String) {
    let style = choose_style(s, simple_key);
    if style == Style::Literal {
        return write_yaml_literal(s, indent, out);
    }
    let allow_breaks = !simple_key;
    let mut column = current_column(out);
    let chars: Vec<char> = s.chars().collect();
    let last = chars.len().saturating_sub(1);
    let quote = match style {
        Style::SingleQuoted => Some('\''),
        Style::DoubleQuoted => Some('"'),
        _ => None,
    };
    if let Some(q) = quote {
        out.push(q);
        column += 1;
    }
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_is_space = chars.get(i + 1) == Some(&' ');
            let may_break = allow_breaks && !spaces && column > BEST_WIDTH;
            let breaks = match style {
                Style::Plain => may_break && !next_is_space,
                Style::SingleQuoted => may_break && i != 0 && i != last && !next_is_space,
                _ => may_break && i != 0 && i != last,
            };
            if breaks {
                break_line(indent, out, &mut column);
                if style == Style::DoubleQuoted && next_is_space {
                    out.push('\\');
                    column += 1;
                }
            } else {
                out.push(' ');
                column += 1;
            }
            spaces = true;
            continue;
        }
        let before = out.len();
        match style {
            Style::DoubleQuoted => write_yaml_double_quoted_char(c, out),
            Style::SingleQuoted if c == '\'' => out.push_str("''"),
            _ => out.push(c),
        }
        column += out[before..].chars().count();
        spaces = false;
    }
    if let Some(q) = quote {
        out.push(q);
    }
}

fn write_yaml_double_quoted_char(c: char, out: &mut String) {
    let needs_escape =
        !is_yaml_printable(c) || c == '\u{feff}' || is_yaml_break(c) || c == '"' || c == '\\';
    if !needs_escape {
        out.push(c);
        return;
    }
    let short = match c {
        '\0' => Some('0'),
        '\u{7}' => Some('a'),
        '\u{8}' => Some('b'),
        '\t' => Some('t'),
        '\n' => Some('n'),
        '\u{b}' => Some('v'),
        '\u{c}' => Some('f'),
        '\r' => Some('r'),
        '\u{1b}' => Some('e'),
        '"' => Some('"'),
        '\\' => Some('\\'),
        '\u{85}' => Some('N'),
        '\u{2028}' => Some('L'),
        '\u{2029}' => Some('P'),
        _ => None,
    };
    match short {
        Some(letter) => {
            out.push('\\');
            out.push(letter);
        }
        None => {
            let v = u32::from(c);
            if v <= 0xff {
                out.push_str(&format!("\\x{v:02X}"));
            } else if v <= 0xffff {
                out.push_str(&format!("\\u{v:04X}"));
            } else {
                out.push_str(&format!("\\U{v:08X}"));
            }
        }
    }
}

fn write_yaml_literal(s: &str, indent: usize, out: &mut String) {
    out.push('|');
    if s.starts_with([' ', '\n']) {
        out.push('2');
    }
    if !s.ends_with('\n') {
        out.push('-');
    } else if s.len() == 1 || s[..s.len() - 1].ends_with('\n') {
        out.push('+');
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
    }
}

/// go-yaml v2's `keyList.Less` for string keys: letters sort after non-letters, and runs
/// of digits compare as numbers.
pub(crate) fn go_yaml_key_order(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(node: &Node) -> String {
        node.to_yaml().expose().to_owned()
    }

    #[test]
    fn scalars_are_quoted_as_go_yaml_quotes_them() {
        let cases = [
            ("plain", "plain"),
            ("true", "\"true\""),
            ("no", "\"no\""),
            ("0755", "\"0755\""),
            ("1.0", "\"1.0\""),
            ("", "\"\""),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            (" lead", "' lead'"),
            ("*star", "'*star'"),
            ("AgB+/x==", "AgB+/x=="),
            ("tab\there", "\"tab\\there\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("2024-1-2", "\"2024-1-2\""),
            ("2024-01-02T10:00:00Z", "\"2024-01-02T10:00:00Z\""),
            ("2024-01-02-backup", "2024-01-02-backup"),
            ("2024-02-30", "2024-02-30"),
            ("1_000", "\"1_000\""),
            ("<<", "<<"),
            ("12:30", "\"12:30\""),
            ("ümlaut", "ümlaut"),
            ("key 🔑", "\"key \\U0001F511\""),
            ("n", "\"n\""),
        ];
        for (input, want) in cases {
            let mut n = Node::map();
            n.insert("k", Node::str(input));
            assert_eq!(yaml(&n), format!("k: {want}\n"), "input {input:?}");
        }
    }

    #[test]
    fn long_scalars_wrap_at_column_80_like_go_yaml() {
        let words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore";
        let mut n = Node::map();
        n.insert("description", Node::str(words));
        assert_eq!(
            yaml(&n),
            // "eiusmod" ends at column 82: the first space past column 80 breaks the line.
            "description: lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\n  tempor incididunt ut labore\n"
        );
        let mut quoted = Node::map();
        quoted.insert("k", Node::str(&format!("{words}:")));
        let out = yaml(&quoted);
        assert_eq!(
            out,
            format!("k: '{}\n  ut labore:'\n", &words[..words.len() - 10])
        );
        // Keys never wrap.
        let mut key = Node::map();
        key.insert(words, Node::str("v"));
        assert_eq!(yaml(&key), format!("{words}: v\n"));
    }

    #[test]
    fn sorting_never_panics_on_go_yamls_cyclic_orders() {
        let mut n = Node::map();
        for i in 0..64 {
            for k in [
                format!("0a{i}"),
                format!("1{i}"),
                format!("01{i}"),
                format!("{i}x0"),
                format!("0{i}"),
            ] {
                n.insert(&k, Node::str("v"));
            }
        }
        assert!(yaml(&n).lines().count() >= 64);
    }

    #[test]
    fn keys_sort_like_go_yaml() {
        let mut keys = vec!["b", "a10", "a2", "A", "_x", "a.b", "a-b", "ab"];
        keys.sort_by(|a, b| go_yaml_key_order(a, b));
        assert_eq!(keys, vec!["_x", "A", "a-b", "a.b", "a2", "a10", "ab", "b"]);
    }

    #[test]
    fn nested_maps_sequences_and_literals() {
        let mut inner = Node::map();
        inner.insert("z", Node::str("1x"));
        let mut item = Node::map();
        item.insert("name", Node::str("nm"));
        item.insert("controller", Node::Bool(true));
        let mut root = Node::map();
        root.insert("seq", Node::Seq(vec![item]));
        root.insert("m", inner);
        root.insert("empty", Node::map());
        root.insert("text", Node::str("line1\nline2\n"));
        assert_eq!(
            yaml(&root),
            "empty: {}\nm:\n  z: 1x\nseq:\n- controller: true\n  name: nm\ntext: |\n  line1\n  line2\n"
        );
        assert_eq!(
            root.to_json().expose(),
            "{\n  \"seq\": [\n    {\n      \"name\": \"nm\",\n      \"controller\": true\n    }\n  ],\n  \"m\": {\n    \"z\": \"1x\"\n  },\n  \"empty\": {},\n  \"text\": \"line1\\nline2\\n\"\n}\n"
        );
    }

    #[test]
    fn json_escapes_html_like_go() {
        let n = Node::str("<a&b>");
        assert_eq!(n.to_json().expose(), "\"\\u003ca\\u0026b\\u003e\"\n");
    }
}
