//! Barman's two output writers. Console: info lines on stdout, `WARNING:`/`ERROR:` lines on
//! stderr. JSON (`-f json`): one object on stdout at exit, keys sorted, messages collected
//! under `_INFO`, `_WARNING`, `_ERROR`, `_EXCEPTION`, results under their own keys.

use std::io::Write;

use serde_json::{Map, Value};

/// Collects a command's output.
#[derive(Debug, Default)]
pub struct Output {
    json: bool,
    quiet: bool,
    messages: Map<String, Value>,
    result: Map<String, Value>,
}

impl Output {
    /// A writer for `json` or console output; `quiet` drops info lines.
    pub fn new(json: bool, quiet: bool) -> Output {
        Output { json, quiet, ..Output::default() }
    }

    /// True when writing JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn push(&mut self, key: &str, msg: String) {
        let list = self.messages.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(v) = list {
            v.push(Value::String(msg));
        }
    }

    /// An info line (stdout).
    pub fn info(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.json {
            self.push("_INFO", msg);
        } else if !self.quiet {
            println!("{msg}");
        }
    }

    /// A `WARNING:` line (stderr).
    pub fn warning(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.json {
            self.push("_WARNING", msg);
        } else {
            eprintln!("WARNING: {msg}");
        }
    }

    /// An `ERROR:` line (stderr).
    pub fn error(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.json {
            self.push("_ERROR", msg);
        } else {
            eprintln!("ERROR: {msg}");
        }
    }

    /// An `EXCEPTION:` (stderr), followed by Barman's pointer to the log.
    pub fn exception(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.json {
            self.push("_EXCEPTION", msg);
        } else {
            eprintln!("EXCEPTION: {msg}\nSee log file for more details.");
        }
    }

    /// Adds a result entry for JSON output (console output is printed by the command).
    pub fn result(&mut self, key: impl Into<String>, value: Value) {
        self.result.insert(key.into(), value);
    }

    /// Prints the JSON object, if in JSON mode.
    pub fn close(self) {
        if !self.json {
            return;
        }
        let mut all = self.result;
        all.extend(self.messages);
        let mut sorted: Vec<_> = all.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let obj: Map<String, Value> = sorted.into_iter().collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Value::Object(obj));
    }
}
