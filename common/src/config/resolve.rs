//! Resolving the options of one section the way `ServerConfig.__init__` and
//! `ModelConfig.__init__` do: the section's value, else (inheritable keys) the `[barman]`
//! value, else the default; each through its parser. A value that fails its parser is
//! warned about and skipped, so the next level applies (strict mode: an error). An empty
//! or `None` value that its parser accepts stays empty and so blocks inheritance; one the
//! parser rejects (booleans, integers, enumerations) is warned about and inherited.

use std::collections::BTreeMap;

use super::error::{ConfigError, InvalidValue, Origin};
use super::ini::{Entry, Ini};
use super::options::{parse_value, OptionSpec, OptionValue, SERVER_OPTIONS};
use super::warning::ConfigWarning;

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSource {
    /// The section that set it (the server's, `barman`, or a model's).
    pub section: String,
    /// The file and line.
    pub origin: Origin,
}

/// The resolved options of one section: set values only, keyed by option name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub(crate) values: BTreeMap<&'static str, OptionValue>,
    pub(crate) sources: BTreeMap<&'static str, ValueSource>,
}

impl Resolved {
    fn store(&mut self, spec: &OptionSpec, value: OptionValue, source: Option<ValueSource>) {
        // Barman's final `value == "" or value == "None"` → None.
        if value.is_unset_text() {
            return;
        }
        self.values.insert(spec.name, value);
        if let Some(source) = source {
            self.sources.insert(spec.name, source);
        }
    }
}

/// `Config.get(section, key, none_value="")`: the interpolated value with the literal
/// `None` turned into `""` and one pair of matching surrounding quotes removed.
pub(crate) fn get_value(ini: &Ini, section: &str, key: &str) -> Result<Option<Entry>, ConfigError> {
    let Some(mut entry) = ini.get(section, key)? else {
        return Ok(None);
    };
    entry.text = if entry.text == "None" { String::new() } else { strip_quotes(&entry.text).to_owned() };
    Ok(Some(entry))
}

/// `Config._QUOTE_RE` (`^(["'])(.*)\1$`, where `.` stops at newlines).
pub(crate) fn strip_quotes(s: &str) -> &str {
    let bytes = s.as_bytes();
    let quoted = bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
        && !s.contains('\n');
    if quoted {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Resolution state shared by every section of one load.
pub(crate) struct Resolver<'a> {
    pub(crate) ini: &'a Ini,
    pub(crate) strict: bool,
    pub(crate) warnings: &'a mut Vec<ConfigWarning>,
}

impl Resolver<'_> {
    /// Warns about (or, strict, rejects) every key of `section` that `allowed` refuses,
    /// interpolating every value on the way (as `ConfigParser.items` does: any broken
    /// value is an error).
    pub(crate) fn check_keys(
        &mut self,
        section: &str,
        allowed: fn(&str) -> bool,
    ) -> Result<Vec<(String, Entry)>, ConfigError> {
        let items = self.ini.items(section)?;
        for (key, entry) in items.iter().filter(|(key, _)| !allowed(key)) {
            let message = format!("Invalid configuration option \"{key}\" in [{section}] section.");
            self.warnings.push(ConfigWarning::always(message, Some(entry.origin.clone())));
        }
        Ok(items)
    }

    /// Every server option of server `name` (`barman_home` feeds the defaults).
    pub(crate) fn resolve_server(&mut self, name: &str, barman_home: &str) -> Result<Resolved, ConfigError> {
        let mut resolved = Resolved::default();
        for spec in SERVER_OPTIONS {
            if let Some((value, source)) = self.resolve_one(spec, name, barman_home, &resolved)? {
                resolved.store(spec, value, source);
            }
        }
        Ok(resolved)
    }

    /// The options a model sets (its own section only: no inheritance, no defaults).
    pub(crate) fn resolve_model(&mut self, name: &str) -> Result<Resolved, ConfigError> {
        let mut resolved = Resolved::default();
        for spec in SERVER_OPTIONS.iter().filter(|s| s.model) {
            if let Some((value, source)) = self.lookup_in(spec, name)? {
                resolved.store(spec, value, source);
            }
        }
        Ok(resolved)
    }

    fn resolve_one(
        &mut self,
        spec: &OptionSpec,
        name: &str,
        barman_home: &str,
        earlier: &Resolved,
    ) -> Result<Option<(OptionValue, Option<ValueSource>)>, ConfigError> {
        if !spec.fixed {
            if let Some(found) = self.lookup_in(spec, name)? {
                return Ok(Some(found));
            }
            if spec.inherit {
                if let Some(found) = self.lookup_in(spec, "barman")? {
                    return Ok(Some(found));
                }
            }
        }
        let Some(template) = spec.default else {
            return Ok(None);
        };
        let text = expand_default(template, name, barman_home, &earlier.values);
        let value = self.invoke(spec, "DEFAULTS", &text, None)?;
        Ok(value.map(|v| (v, None)))
    }

    fn lookup_in(
        &mut self,
        spec: &OptionSpec,
        section: &str,
    ) -> Result<Option<(OptionValue, Option<ValueSource>)>, ConfigError> {
        let Some(entry) = get_value(self.ini, section, spec.name)? else {
            return Ok(None);
        };
        let source = format!("[{section}] section");
        let value = self.invoke(spec, &source, &entry.text, Some(&entry.origin))?;
        let origin = ValueSource { section: section.to_owned(), origin: entry.origin };
        Ok(value.map(|v| (v, Some(origin))))
    }

    /// `BaseConfig.invoke_parser`: a failing parser gives a warning and `None`.
    fn invoke(
        &mut self,
        spec: &OptionSpec,
        source: &str,
        text: &str,
        origin: Option<&Origin>,
    ) -> Result<Option<OptionValue>, ConfigError> {
        match parse_value(spec.kind, spec.name, source, text) {
            Ok(value) => Ok(value),
            Err(reason) => {
                self.invalid(source, spec.name, text, &reason, origin)?;
                Ok(None)
            }
        }
    }

    /// Reports a rejected value: `Ignoring invalid configuration value …` or, strict, an
    /// error (when the value has a file and line).
    pub(crate) fn invalid(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        reason: &str,
        origin: Option<&Origin>,
    ) -> Result<(), ConfigError> {
        if let (true, Some(origin)) = (self.strict, origin) {
            return Err(invalid_value(origin, section_of(source), key, value, reason));
        }
        let message = format!("Ignoring invalid configuration value '{value}' for key {key} in {source}: {reason}");
        self.warnings.push(ConfigWarning::always(message, origin.cloned()));
        Ok(())
    }
}

/// The section name inside Barman's `[name] section` source label.
fn section_of(source: &str) -> &str {
    source.strip_prefix('[').and_then(|s| s.strip_suffix("] section")).unwrap_or(source)
}

/// A [`ConfigError::InvalidValue`] at `origin`.
pub(crate) fn invalid_value(origin: &Origin, section: &str, key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue(Box::new(InvalidValue {
        file: origin.file.clone(),
        line: origin.line,
        section: section.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }))
}

/// `DEFAULTS[key] % self.__dict__`: `%(name)s`, `%(barman_home)s` and options resolved
/// earlier (Python `str()` of each; an unset one is `None`).
fn expand_default(
    template: &str,
    name: &str,
    barman_home: &str,
    earlier: &BTreeMap<&'static str, OptionValue>,
) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(")s") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &after[..end];
        let value = match key {
            "name" => name.to_owned(),
            "barman_home" => barman_home.to_owned(),
            _ => earlier.get(key).map_or_else(|| "None".to_owned(), ToString::to_string),
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}
