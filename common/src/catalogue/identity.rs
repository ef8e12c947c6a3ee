//! identity.json (spec §2): the cluster a server's catalogue belongs to, written once at
//! the first backup and compared by the `systemid coherence` check.
//!
//! Written like Barman's `json.dump(..., indent=4, sort_keys=True)` plus a newline:
//! four-space indent, sorted keys, ASCII-only escapes.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::error::CatalogueError;
use super::fsio::{io_err, read_optional, write_atomic};
use super::layout::ServerLayout;
use super::pyliteral::repr_float;

/// The content of identity.json.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Database system identifier, decimal text (`"7710726391820181241"`).
    pub systemid: String,
    /// Major version as text: `"15"`, or `"9.6"` for releases before 10.
    pub version: String,
}

impl Identity {
    /// An identity from the system id and `server_version_num` (`150018` gives `"15"`,
    /// `90624` gives `"9.6"`).
    pub fn new(systemid: u64, server_version_num: u32) -> Identity {
        Identity { systemid: systemid.to_string(), version: major_version(server_version_num) }
    }

    /// The file content, byte-identical to Barman's.
    pub fn to_json(&self) -> String {
        format!(
            "{{\n    \"systemid\": {},\n    \"version\": {}\n}}\n",
            json_ascii(&self.systemid),
            json_ascii(&self.version)
        )
    }

    /// Parses identity.json. Extra keys are ignored; `systemid` may also be a JSON number.
    pub fn parse(text: &str, path: &Path) -> Result<Identity, CatalogueError> {
        let value: Value =
            serde_json::from_str(text).map_err(|source| CatalogueError::Json { path: path.to_path_buf(), source })?;
        let field = |key: &str| match value.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let missing = |key: &str| CatalogueError::InvalidValue {
            path: path.to_path_buf(),
            key: key.to_owned(),
            value: text.trim().to_owned(),
            reason: format!("no \"{key}\" string"),
        };
        Ok(Identity {
            systemid: field("systemid").ok_or_else(|| missing("systemid"))?,
            version: field("version").ok_or_else(|| missing("version"))?,
        })
    }

    /// Reads `<backup_directory>/identity.json`; `None` if there is none (passive nodes,
    /// servers never backed up).
    pub fn read(layout: &ServerLayout) -> Result<Option<Identity>, CatalogueError> {
        let path = layout.identity_path();
        let Some(bytes) = read_optional(&path)? else { return Ok(None) };
        let text = String::from_utf8(bytes)
            .map_err(|e| io_err(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Identity::parse(&text, &path).map(Some)
    }

    /// Writes identity.json durably (Barman never rewrites it; see
    /// [`Identity::write_if_missing`]).
    pub fn write(&self, layout: &ServerLayout) -> Result<(), CatalogueError> {
        write_atomic(&layout.identity_path(), self.to_json().as_bytes())
    }

    /// Writes identity.json unless it exists, as `barman backup` does; true if written.
    pub fn write_if_missing(&self, layout: &ServerLayout) -> Result<bool, CatalogueError> {
        if layout.identity_path().exists() {
            return Ok(false);
        }
        self.write(layout).map(|()| true)
    }
}

/// Barman's major version text for a `server_version_num`.
pub fn major_version(server_version_num: u32) -> String {
    let major = server_version_num / 10000;
    if major < 10 {
        format!("{major}.{}", server_version_num / 100 % 100)
    } else {
        major.to_string()
    }
}

/// A JSON string literal as Python's `json.dumps` writes it (`ensure_ascii=True`).
pub fn json_ascii(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("writing to a String");
                }
            }
        }
    }
    out.push('"');
    out
}

/// Python's `json.dumps(value, indent=indent, sort_keys=sort_keys)` with the default
/// `ensure_ascii=True`: `", "`/`": "` separators when compact; with an indent, one item
/// per line, `","` at line ends and empty containers as `[]`/`{}`. Floats print as
/// Python's `repr(float)` (`1795293407.6400094`, `1e-05`, `1.0`), integers as integers. No
/// trailing newline.
pub fn python_json(value: &Value, indent: Option<usize>, sort_keys: bool) -> String {
    let mut out = String::new();
    write_json(value, indent, sort_keys, 0, &mut out);
    out
}

fn write_json(value: &Value, indent: Option<usize>, sort_keys: bool, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            if sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                out.push_str(&json_ascii(key));
                out.push_str(": ");
                write_json(&map[key], indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                write_json(item, indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        Value::String(s) => out.push_str(&json_ascii(s)),
        Value::Number(n) => match (n.is_f64(), n.as_f64()) {
            (true, Some(x)) if x.is_nan() => out.push_str("NaN"),
            (true, Some(x)) if x.is_infinite() => out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" }),
            (true, Some(x)) => out.push_str(&repr_float(x)),
            _ => out.push_str(&n.to_string()),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../../tests/fixtures/barman-3.20.1/identity.json");

    #[test]
    fn real_file_round_trips() {
        let id = Identity::parse(REAL, Path::new("identity.json")).expect("parse");
        assert_eq!(id, Identity { systemid: "7710748660495381380".into(), version: "15".into() });
        assert_eq!(id.to_json(), REAL);
        assert_eq!(Identity::new(7_710_748_660_495_381_380, 150_018), id);
    }

    #[test]
    fn old_versions_and_escapes() {
        assert_eq!(major_version(90624), "9.6");
        assert_eq!(major_version(100_023), "10");
        assert_eq!(json_ascii("a\"\u{e9}\u{1f600}"), "\"a\\\"\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn python_json_layouts() {
        let v: Value = serde_json::from_str(r#"{"b": [1, 2.5, {}], "a": {"x": null, "y": []}, "c": 1e-05, "d": true}"#)
            .expect("json");
        assert_eq!(
            python_json(&v, None, true),
            r#"{"a": {"x": null, "y": []}, "b": [1, 2.5, {}], "c": 1e-05, "d": true}"#
        );
        assert_eq!(
            python_json(&v, Some(4), false),
            "{\n    \"b\": [\n        1,\n        2.5,\n        {}\n    ],\n    \"a\": {\n        \"x\": null,\n        \"y\": []\n    },\n    \"c\": 1e-05,\n    \"d\": true\n}"
        );
    }

    #[test]
    fn write_once() {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        layout.ensure_dirs().expect("dirs");
        assert_eq!(Identity::read(&layout).expect("read"), None);
        let id = Identity::new(1, 150_000);
        assert!(id.write_if_missing(&layout).expect("write"));
        assert!(!Identity::new(2, 150_000).write_if_missing(&layout).expect("kept"));
        assert_eq!(Identity::read(&layout).expect("read"), Some(id));
        assert!(Identity::parse("{\"version\": \"15\"}", Path::new("x")).is_err());
    }
}
