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
    debug: bool,
    colors: bool,
    messages: Map<String, Value>,
    result: Map<String, Value>,
    logger: Option<&'static str>,
}

impl Output {
    /// A writer for `json` or console output; `quiet` drops info lines.
    pub fn new(json: bool, quiet: bool) -> Output {
        Output { json, quiet, ..Output::default() }
    }

    /// `-d`: also print debug messages (`DEBUG:` on stderr, `_DEBUG` in JSON), as Barman.
    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// The logger (`barman.<module>`) the messages also go to, as Barman logs each printed
    /// message under its caller's module; returns the previous one (default `cli`).
    pub fn set_logger(&mut self, module: &'static str) -> &'static str {
        self.logger.replace(module).unwrap_or("cli")
    }

    /// Runs `f` with the messages logged under `barman.<module>`, then restores the logger.
    pub fn logged_as<T>(&mut self, module: &'static str, f: impl FnOnce(&mut Output) -> T) -> T {
        let previous = self.set_logger(module);
        let result = f(self);
        self.set_logger(previous);
        result
    }

    fn log(&self, level: crate::log::Level, msg: &str) {
        crate::log::write(level, self.logger.unwrap_or("cli"), msg);
    }

    /// `--color`: ANSI colours on `WARNING`/`ERROR`/`EXCEPTION` lines and check results.
    pub fn set_colors(&mut self, colors: bool) {
        self.colors = colors;
    }

    /// `msg` in the ANSI colour `code` (31 red, 32 green, 33 yellow) when colours are on
    /// (Barman's `_colored`).
    pub fn paint(&self, code: &str, msg: &str) -> String {
        if self.colors {
            format!("\x1b[{code}m{msg}\x1b[0m")
        } else {
            msg.to_owned()
        }
    }

    /// A debug message, shown only with `-d`.
    pub fn debug(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.log(crate::log::Level::Debug, &msg);
        if !self.debug {
            return;
        }
        if self.json {
            self.push("_DEBUG", msg);
        } else {
            eprintln!("DEBUG: {msg}");
        }
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
        self.log(crate::log::Level::Info, &msg);
        self.info_unlogged(msg);
    }

    /// An info line that is not logged (Barman's `output.info(..., log=False)`).
    pub fn info_unlogged(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.json {
            self.push("_INFO", msg);
        } else if !self.quiet {
            println!("{msg}");
        }
    }

    /// A console-only line: a command's rendering of a result it also reports with
    /// [`Output::result`] (dropped in JSON mode, as Barman's JSON writer does).
    pub fn line(&mut self, msg: impl Into<String>) {
        if !self.json && !self.quiet {
            println!("{}", msg.into());
        }
    }

    /// A `WARNING:` line (stderr).
    pub fn warning(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.log(crate::log::Level::Warning, &msg);
        if self.json {
            self.push("_WARNING", msg);
        } else {
            eprintln!("{}", self.paint("33", &format!("WARNING: {msg}")));
        }
    }

    /// An `ERROR:` line (stderr).
    pub fn error(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.log(crate::log::Level::Error, &msg);
        if self.json {
            self.push("_ERROR", msg);
        } else {
            eprintln!("{}", self.paint("31", &format!("ERROR: {msg}")));
        }
    }

    /// An `EXCEPTION:` (stderr), followed by Barman's pointer to the log.
    pub fn exception(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.log(crate::log::Level::Error, &msg);
        if self.json {
            self.push("_EXCEPTION", msg);
        } else {
            eprintln!("{}\nSee log file for more details.", self.paint("31", &format!("EXCEPTION: {msg}")));
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
        let mut text = String::new();
        python_json(&Value::Object(all), &mut text);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Serialises like Python's `json.dump(obj, sort_keys=True)`: keys sorted at every level,
/// `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`, no trailing newline (the
/// writer is shared with the catalogue: [`barman_common::catalogue::python_json`]).
pub fn python_json(v: &Value, out: &mut String) {
    out.push_str(&barman_common::catalogue::python_json(v, None, true));
}

/// Writes a command's failure the way Barman does and returns the exit status: `ERROR:`
/// (or the error's own status), `EXCEPTION:` for unexpected failures, nothing more for a
/// command that already reported.
pub fn report(result: Result<(), crate::CmdError>, out: &mut Output) -> barman_common::exit::ExitCode {
    use crate::CmdError;
    use barman_common::exit::{ExitCode, HasExitCode};
    let Err(e) = result else { return ExitCode::Success };
    match &e {
        CmdError::Error(msg) | CmdError::Code(msg, _) | CmdError::Unsupported(msg) => out.error(msg.clone()),
        CmdError::Gpg(_) => out.error(e.to_string()),
        CmdError::Exception(msg) => out.exception(msg.clone()),
        CmdError::Io(_) | CmdError::Catalogue(_) => out.exception(e.to_string()),
        CmdError::Silent(_) => {}
    }
    e.exit_code()
}
