//! An INI reader that behaves like Python's `ConfigParser(strict=False)` with
//! `BasicInterpolation`, driven the way Barman 3.20.1 drives it (`ConfigMapping.read_config`).
//!
//! Dialect: `key = value` or `key: value` (split at the first `=` or `:`), keys
//! lower-cased, section names case-sensitive, whole-line `#`/`;` comments only (no inline
//! comments), deeper-indented lines continue the previous value (blank lines inside a
//! value are kept, trailing ones dropped), duplicate sections and keys merge with the last
//! value winning in the first value's position.
//!
//! Interpolation happens **twice**, because Barman reads each file into a temporary parser
//! and copies the *interpolated* values into the main one, which interpolates them again
//! on every `get`:
//! 1. per file, `%(key)s` resolves against the same section plus that file's `[DEFAULT]`
//!    (whose keys are also copied into every section of the file); `%%` becomes `%`; the
//!    result must again be valid interpolation syntax, so a lone `%` (even one written
//!    `%%`) is an error: a literal `%` has to be written `%%%%`;
//! 2. on lookup, against the merged section (all files; `[DEFAULT]` never survives the
//!    copy).
//!
//! Every value remembers the file and line of the `key = value` line that last set it.

use std::fs;
use std::path::Path;

use super::error::{ConfigError, Origin};

/// `configparser.MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// An insertion-ordered map, like a Python dict: setting an existing key keeps its place.
#[derive(Debug, Clone)]
pub(crate) struct Ordered<V> {
    items: Vec<(String, V)>,
}

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered { items: Vec::new() }
    }
}

impl<V> Ordered<V> {
    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.items.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, keeping the position of an earlier value.
    pub(crate) fn set(&mut self, key: String, value: V) {
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.items.push((key, value)),
        }
    }

    /// The entry for `key`, created empty if missing.
    fn entry(&mut self, key: &str) -> &mut V
    where
        V: Default,
    {
        let pos = self.items.iter().position(|(k, _)| k == key).unwrap_or_else(|| {
            self.items.push((key.to_owned(), V::default()));
            self.items.len() - 1
        });
        &mut self.items[pos].1
    }

    /// Keys and values in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in insertion order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _)| k.as_str())
    }
}

/// One stored value and the line that set it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The text (raw when just read, interpolated once when merged).
    pub(crate) text: String,
    /// Where it was set.
    pub(crate) origin: Origin,
}

/// The options of one section.
pub(crate) type Section = Ordered<Entry>;

/// The merged configuration: sections in order of first appearance over all files.
#[derive(Debug, Default)]
pub(crate) struct Ini {
    sections: Ordered<Section>,
}

impl Ini {
    /// Reads `path` and merges it in, as `ConfigMapping.read_config` does.
    pub(crate) fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let parsed = read_file(path)?;
        self.merge(first_pass(&parsed)?);
        Ok(())
    }

    fn merge(&mut self, sections: Ordered<Section>) {
        for (name, options) in sections.items {
            let section = self.sections.entry(&name);
            for (key, entry) in options.items {
                section.set(key, entry);
            }
        }
    }

    /// Whether `name` is a section.
    pub(crate) fn has_section(&self, name: &str) -> bool {
        self.sections.get(name).is_some()
    }

    /// Section names in order of first appearance.
    pub(crate) fn section_names(&self) -> Vec<String> {
        self.sections.keys().map(str::to_owned).collect()
    }

    /// `ConfigParser.get(section, key)`: the value interpolated against its merged
    /// section, or `None` when the section or key is missing.
    pub(crate) fn get(&self, section: &str, key: &str) -> Result<Option<Entry>, ConfigError> {
        let Some(options) = self.sections.get(section) else {
            return Ok(None);
        };
        let Some(entry) = options.get(key) else {
            return Ok(None);
        };
        second_pass(options, section, key, entry).map(Some)
    }

    /// `ConfigParser.items(section)`: every option, interpolated (an error in any value
    /// fails the whole call, as in Python).
    pub(crate) fn items(&self, section: &str) -> Result<Vec<(String, Entry)>, ConfigError> {
        let Some(options) = self.sections.get(section) else {
            return Ok(Vec::new());
        };
        options.iter().map(|(key, entry)| Ok((key.to_owned(), second_pass(options, section, key, entry)?))).collect()
    }
}

/// One file as read, before any interpolation.
#[derive(Debug, Default)]
struct ParsedFile {
    defaults: Section,
    sections: Ordered<Section>,
}

fn read_file(path: &Path) -> Result<ParsedFile, ConfigError> {
    let bytes = fs::read(path).map_err(|source| ConfigError::Unreadable { file: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|source| ConfigError::NotUtf8 { file: path.to_path_buf(), source })?;
    parse_text(&text, path)
}

/// Parses INI text; `file` only labels errors and origins.
fn parse_text(text: &str, file: &Path) -> Result<ParsedFile, ConfigError> {
    let mut parser = LineParser::new(file);
    for (index, line) in split_lines(text).enumerate() {
        parser.feed(index + 1, line)?;
    }
    Ok(parser.finish())
}

/// Python's universal newlines: `\r\n`, `\r` and `\n` all end a line.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") { 2 } else { usize::from(end < rest.len()) };
        rest = &rest[end + skip..];
        Some(line)
    })
}

/// Which section the lines being read belong to.
enum Cursor {
    Nowhere,
    Defaults,
    Section(String),
}

/// A value being read: its lines (joined at the end) and where it started.
#[derive(Debug, Default)]
struct Pending {
    lines: Vec<String>,
    origin: Option<Origin>,
}

/// The state machine of `RawConfigParser._read`.
struct LineParser<'a> {
    file: &'a Path,
    defaults: Ordered<Pending>,
    sections: Ordered<Ordered<Pending>>,
    cursor: Cursor,
    option: Option<String>,
    indent_level: usize,
}

impl<'a> LineParser<'a> {
    fn new(file: &'a Path) -> Self {
        LineParser {
            file,
            defaults: Ordered::default(),
            sections: Ordered::default(),
            cursor: Cursor::Nowhere,
            option: None,
            indent_level: 0,
        }
    }

    fn feed(&mut self, lineno: usize, line: &str) -> Result<(), ConfigError> {
        let stripped = line.trim();
        let comment = stripped.starts_with('#') || stripped.starts_with(';');
        if comment || stripped.is_empty() {
            if !comment {
                self.append(String::new());
            }
            return Ok(());
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if self.option.is_some() && indent > self.indent_level {
            self.append(stripped.to_owned());
            return Ok(());
        }
        self.indent_level = indent;
        if let Some(name) = section_header(stripped) {
            self.open_section(name);
            return Ok(());
        }
        self.option_line(lineno, stripped)
    }

    fn open_section(&mut self, name: &str) {
        // `[DEFAULT]` is never a real section in ConfigParser.
        self.cursor = if name == "DEFAULT" {
            Cursor::Defaults
        } else {
            self.sections.entry(name);
            Cursor::Section(name.to_owned())
        };
        self.option = None;
    }

    fn option_line(&mut self, lineno: usize, value: &str) -> Result<(), ConfigError> {
        let origin = Origin::new(self.file, lineno);
        if matches!(self.cursor, Cursor::Nowhere) {
            let msg = format!("'{value}' comes before any [section] header");
            return Err(ConfigError::syntax(&origin, msg));
        }
        let Some((key, text)) = split_option(value) else {
            let msg = format!(
                "cannot parse '{value}': expected '[section]', 'key = value', 'key: value', \
                 a '#' or ';' comment line, or an indented continuation line"
            );
            return Err(ConfigError::syntax(&origin, msg));
        };
        if key.is_empty() {
            let msg = format!("missing option name in '{value}'");
            return Err(ConfigError::syntax(&origin, msg));
        }
        let key = key.to_lowercase();
        let pending = Pending { lines: vec![text.to_owned()], origin: Some(origin) };
        self.current().set(key.clone(), pending);
        self.option = Some(key);
        Ok(())
    }

    fn current(&mut self) -> &mut Ordered<Pending> {
        match &self.cursor {
            Cursor::Section(name) => self.sections.entry(name),
            Cursor::Defaults | Cursor::Nowhere => &mut self.defaults,
        }
    }

    /// Adds a continuation (or, for "", a blank) line to the current option.
    fn append(&mut self, line: String) {
        let Some(option) = self.option.clone() else {
            return;
        };
        if let Some(pending) = self.current().get_mut(&option) {
            pending.lines.push(line);
        }
    }

    fn finish(self) -> ParsedFile {
        let file = self.file;
        let join = |pending: Ordered<Pending>| {
            let mut section = Section::default();
            for (key, p) in pending.items {
                let origin = p.origin.unwrap_or_else(|| Origin::new(file, 0));
                let text = p.lines.join("\n").trim_end().to_owned();
                section.set(key, Entry { text, origin });
            }
            section
        };
        let mut sections = Ordered::default();
        for (name, pending) in self.sections.items {
            sections.set(name, join(pending));
        }
        ParsedFile { defaults: join(self.defaults), sections }
    }
}

/// `SECTCRE` (`\[(?P<header>.+)\]`, matched at the start): the text up to the last `]`.
fn section_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    (end > 0).then(|| &inner[..end])
}

/// `OPTCRE`: split at the first `=` or `:`, trimming around the delimiter.
fn split_option(line: &str) -> Option<(&str, &str)> {
    let pos = line.find(['=', ':'])?;
    Some((line[..pos].trim_end(), line[pos + 1..].trim()))
}

/// Pass 1: each section of one file, with the file's `[DEFAULT]` keys appended, every
/// value interpolated against section + `[DEFAULT]` and then syntax-checked again
/// (`BasicInterpolation.before_set` in `ConfigParser.set`).
fn first_pass(parsed: &ParsedFile) -> Result<Ordered<Section>, ConfigError> {
    let mut out = Ordered::default();
    for (name, section) in parsed.sections.iter() {
        let lookup = |key: &str| section.get(key).or_else(|| parsed.defaults.get(key));
        let default_only = parsed.defaults.keys().filter(|k| section.get(k).is_none());
        let mut options = Section::default();
        for key in section.keys().chain(default_only) {
            let Some(entry) = lookup(key) else { continue };
            let found = |var: &str| lookup(var).map(|e| e.text.clone());
            let text =
                interpolate(&entry.text, &found).map_err(|e| e.into_error(&entry.origin, name, key, Pass::First))?;
            check_syntax(&text, &entry.origin, name, key)?;
            options.set(key.to_owned(), Entry { text, origin: entry.origin.clone() });
        }
        out.set(name.to_owned(), options);
    }
    Ok(out)
}

/// Pass 2: one merged value interpolated against its merged section.
fn second_pass(options: &Section, section: &str, key: &str, entry: &Entry) -> Result<Entry, ConfigError> {
    let found = |var: &str| options.get(var).map(|e| e.text.clone());
    let text = interpolate(&entry.text, &found).map_err(|e| e.into_error(&entry.origin, section, key, Pass::Second))?;
    Ok(Entry { text, origin: entry.origin.clone() })
}

/// Which interpolation pass failed (only changes the hint in the message).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    Second,
}

/// The interpolation failures of `BasicInterpolation._interpolate_some`.
#[derive(Debug)]
enum InterpError {
    Depth,
    BadReference(String),
    BadPercent(String),
    Missing(String),
}

impl InterpError {
    fn into_error(self, origin: &Origin, section: &str, key: &str, pass: Pass) -> ConfigError {
        let place = format!("option '{key}' in [{section}]");
        let message = match self {
            InterpError::Depth => {
                format!("{place}: interpolation recursion limit exceeded ({MAX_INTERPOLATION_DEPTH} steps)")
            }
            InterpError::BadReference(rest) => {
                format!("{place}: bad interpolation variable reference '{rest}'")
            }
            InterpError::BadPercent(rest) => format!(
                "{place}: '%' must be followed by '%' or '(', found '{rest}' \
                 (a literal '%' must be written '%%%%': Barman interpolates values twice)"
            ),
            InterpError::Missing(var) if pass == Pass::First => {
                format!("{place}: '%({var})s' is not an option of [{section}] or [DEFAULT] in this file")
            }
            InterpError::Missing(var) => {
                format!("{place}: '%({var})s' (written '%%({var})s') is not an option of [{section}]")
            }
        };
        ConfigError::syntax(origin, message)
    }
}

/// `%(name)s` → the raw value of `name` (itself interpolated, up to 10 levels deep),
/// `%%` → `%`, any other `%` is an error.
fn interpolate(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpError> {
    let mut out = String::with_capacity(value.len());
    interpolate_into(&mut out, value, lookup, 1)?;
    Ok(out)
}

fn interpolate_into(
    out: &mut String,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<(), InterpError> {
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(InterpError::Depth);
    }
    let mut rest = value;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        if rest[1..].starts_with('%') {
            out.push('%');
            rest = &rest[2..];
        } else if rest[1..].starts_with('(') {
            let (var, len) = match_reference(rest).ok_or_else(|| InterpError::BadReference(rest.to_owned()))?;
            let var = var.to_lowercase();
            let replacement = lookup(&var).ok_or(InterpError::Missing(var))?;
            if replacement.contains('%') {
                interpolate_into(out, &replacement, lookup, depth + 1)?;
            } else {
                out.push_str(&replacement);
            }
            rest = &rest[len..];
        } else {
            return Err(InterpError::BadPercent(rest.to_owned()));
        }
    }
    out.push_str(rest);
    Ok(())
}

/// `%\(([^)]+)\)s` at the start of `s`: the name and the length of the match.
fn match_reference(s: &str) -> Option<(&str, usize)> {
    let inner = s.strip_prefix("%(")?;
    let close = inner.find(')')?;
    let matched = close > 0 && inner[close + 1..].starts_with('s');
    matched.then(|| (&inner[..close], close + 4))
}

/// `BasicInterpolation.before_set`: after removing `%%` and valid references no `%` may
/// remain.
fn check_syntax(value: &str, origin: &Origin, section: &str, key: &str) -> Result<(), ConfigError> {
    let without_escapes = value.replace("%%", "");
    if !strip_references(&without_escapes).contains('%') {
        return Ok(());
    }
    let message = format!(
        "option '{key}' in [{section}]: invalid interpolation syntax in '{value}' \
         (after the first interpolation pass; a literal '%' must be written '%%%%': \
         Barman interpolates values twice)"
    );
    Err(ConfigError::syntax(origin, message))
}

fn strip_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some((_, len)) = match_reference(rest) {
            rest = &rest[len..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Parses `text` as one file named `name` (tests only).
#[cfg(test)]
pub(crate) fn parse_for_test(text: &str, name: &str) -> Result<Ini, ConfigError> {
    let mut ini = Ini::default();
    ini.merge(first_pass(&parse_text(text, Path::new(name))?)?);
    Ok(ini)
}
