//! `barman config-update`: the configuration side of Barman 3.20.1's
//! `ConfigChangesProcessor`. A JSON section (`scope`, `server_name` / `model_name`, then
//! options) is validated as Barman does ([`validate_section`]); each option is written to
//! the file that provides its effective value, or to `<barman_home>/.barman.auto.conf`
//! when it has none ([`config_source`]); files are edited line by line as Barman's
//! `edit_config` does ([`edit_config`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ini::Ini;
use super::options::{model_key_allowed, parse_value, server_key_allowed, spec};
use super::Config;
use crate::catalogue::{repr_float, repr_str};

/// A validated section of a `config-update` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionUpdate {
    /// The section (server or model name).
    pub section: String,
    /// The options to set, in the request's order (`model = on` last for a new model).
    pub options: Vec<(String, String)>,
}

/// Python's `repr()` of a JSON value (a `dict` for an object), for Barman's messages.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), repr_float),
        Value::Number(n) => n.to_string(),
        Value::String(s) => repr_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", repr_str(k), py_repr(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `str()` of a JSON value (how an option value reaches the parsers and files).
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// `ConfigChangesProcessor._validate_section`: the section's name and options, or Barman's
/// `ERROR:` message.
pub fn validate_section(config: &Config, section: &Value) -> Result<SectionUpdate, String> {
    let original = py_repr(section);
    let Some(map) = section.as_object() else {
        return Err(format!(
            "Invalid section {original}: 'scope' is invalid: 'None'. It should be either 'server' or 'model'."
        ));
    };
    let scope = map.get("scope").map_or_else(|| "None".to_owned(), py_str);
    let is_model = match scope.as_str() {
        "server" => false,
        "model" => true,
        _ => {
            return Err(format!(
                "Invalid section {original}: 'scope' is invalid: '{scope}'. It should be either 'server' or 'model'."
            ))
        }
    };
    let name_key = if is_model { "model_name" } else { "server_name" };
    let Some(name) = map.get(name_key).map(py_str) else {
        return Err(format!("Invalid section {original}: '{name_key}' is missing."));
    };
    let mut options: Vec<(String, String)> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "scope" && k.as_str() != name_key)
        .map(|(k, v)| (k.clone(), py_str(v)))
        .collect();
    let (server, model) = (config.server(&name), config.model(&name));
    if !is_model && model.is_some() {
        return Err(format!("Invalid section {original}: '{name}' is a model, not a server."));
    }
    if is_model && server.is_some() {
        return Err(format!("Invalid section {original}: '{name}' is a server, not a model."));
    }
    if is_model && model.is_none() {
        if !options.iter().any(|(k, _)| k == "model") {
            options.push(("model".to_owned(), "on".to_owned()));
        }
        if !options.iter().any(|(k, _)| k == "cluster") {
            return Err(format!("Invalid section {original}: new model but 'cluster' is missing."));
        }
    }
    for (key, value) in &options {
        let allowed = if is_model { model_key_allowed(key) } else { server_key_allowed(key) && key != "model" };
        if !allowed {
            return Err(format!("Invalid option '{key}' for {scope} '{name}'"));
        }
        if let Some(spec) = spec(key) {
            parse_value(spec.kind, key, &format!("{scope} '{name}'"), value)
                .map_err(|e| format!("Validation failed for {scope} '{name}': key '{key}' -> {e}"))?;
        }
    }
    Ok(SectionUpdate { section: name, options })
}

/// `get_config_source`: the file that sets `key` for `section` (or for `[barman]`), else
/// `<barman_home>/.barman.auto.conf`.
pub fn config_source(config: &Config, section: &str, key: &str) -> PathBuf {
    let from_server = config.server(section).and_then(|s| s.source(key));
    let from_model = config.model(section).and_then(|m| m.source(key));
    match from_server.or(from_model) {
        Some(source) => source.origin.file.clone(),
        None => PathBuf::from(format!("{}/.barman.auto.conf", config.global().barman_home.display())),
    }
}

/// `Config.get(section, key)`: the value as the files spell it (interpolated, one level of
/// quotes removed, `None` for `None`), `None` when the section does not set it.
pub fn raw_value(config: &Config, section: &str, key: &str) -> Option<String> {
    let mut ini = Ini::default();
    for file in config.loaded_files() {
        ini.merge_file(file).ok()?;
    }
    let text = ini.get(section, key).ok()??.text;
    if text == "None" {
        return None;
    }
    let bytes = text.as_bytes();
    let quoted = bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[bytes.len() - 1] == bytes[0];
    Some(if quoted { text[1..text.len() - 1].to_owned() } else { text })
}

/// `utils.edit_config`: sets `key = value` in `[section]` of `lines` (each with its
/// newline): an existing `key=` line is replaced, else the line goes at the end of the
/// section (in place of the blank line before the next header, where Barman puts it), and
/// a missing section is appended with the option.
pub fn edit_config(mut lines: Vec<String>, section: &str, key: &str, value: &str) -> Vec<String> {
    let line = format!("{key} = {value}\n");
    let header = format!("[{section}]");
    let Some(start) = lines.iter().position(|l| l.trim() == header) else {
        lines.push(format!("{header}\n"));
        lines.push(line);
        return lines;
    };
    let prefix = format!("{key}=");
    for idx in start + 1..lines.len() {
        if lines[idx].trim().starts_with('[') {
            if lines[idx - 1].trim().is_empty() && idx - 1 > start {
                lines[idx - 1] = line;
            } else {
                lines.insert(idx, line);
            }
            return lines;
        }
        if lines[idx].trim().replace(' ', "").starts_with(&prefix) {
            lines[idx] = line;
            return lines;
        }
    }
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.last_mut().expect("checked above").push('\n');
    }
    lines.push(line);
    lines
}

/// The lines of `path` (none when it does not exist).
pub fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.split_inclusive('\n').map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.split_inclusive('\n').map(str::to_owned).collect()
    }

    #[test]
    fn edit_config_replaces_adds_and_appends_as_barman() {
        let text = "[barman]\nbarman_home = /x\n\n[pg]\nconninfo = a\n\n[other]\nk = v\n";
        let replaced = edit_config(lines(text), "pg", "conninfo", "b").concat();
        assert_eq!(replaced, "[barman]\nbarman_home = /x\n\n[pg]\nconninfo = b\n\n[other]\nk = v\n");
        let added = edit_config(lines(text), "pg", "archiver", "on").concat();
        assert_eq!(added, "[barman]\nbarman_home = /x\n\n[pg]\nconninfo = a\narchiver = on\n[other]\nk = v\n");
        let last = edit_config(lines(text), "other", "z", "1").concat();
        assert!(last.ends_with("[other]\nk = v\nz = 1\n"), "{last}");
        let new = edit_config(lines(text), "new", "cluster", "c").concat();
        assert!(new.ends_with("k = v\n[new]\ncluster = c\n"), "{new}");
        assert_eq!(edit_config(Vec::new(), "m", "model", "on").concat(), "[m]\nmodel = on\n");
        let tight = edit_config(lines("[pg]\na = 1\n[b]\n"), "pg", "c", "2").concat();
        assert_eq!(tight, "[pg]\na = 1\nc = 2\n[b]\n");
    }

    #[test]
    fn python_reprs() {
        let v: Value = serde_json::from_str(r#"{"scope": "server", "n": 1, "b": true, "x": null}"#).expect("json");
        assert_eq!(py_repr(&v), "{'scope': 'server', 'n': 1, 'b': True, 'x': None}");
    }
}
