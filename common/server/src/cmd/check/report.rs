//! The console and JSON writers of one server's check results (Barman's
//! `ConsoleOutputWriter` and `JsonOutputWriter` `result_check`).

use barman_common::config::ServerConfig;
use serde_json::{json, Map, Value};

use super::results::Check;
use crate::output::Output;

/// The JSON key of a check name (Barman's `_mangle_key`).
fn mangle(key: &str) -> String {
    key.to_lowercase().replace([' ', '-'], "_").replace('.', "")
}

/// `OK` or `FAILED`.
fn status(c: &Check) -> &'static str {
    if c.ok {
        "OK"
    } else {
        "FAILED"
    }
}

/// `check_configuration`'s reason lines, info messages under the `configuration` check.
fn disabled_reasons(cfg: &ServerConfig, out: &mut Output) {
    for reason in cfg.disabled_reasons() {
        out.info(format!("\t\t{reason}"));
    }
}

/// `Server NAME:` (with ` (inactive)` or ` (WARNING: disabled)`), then `\tname: OK|FAILED
/// (hint)` per check.
pub fn console(name: &str, cfg: &ServerConfig, checks: &[Check], out: &mut Output) {
    let mut header = name.to_owned();
    if !cfg.active {
        header.push_str(" (inactive)");
    } else if cfg.is_disabled() {
        header.push_str(" (WARNING: disabled)");
    }
    out.line(format!("Server {header}:"));
    for c in checks {
        let status = out.paint(if c.ok { "32" } else { "31" }, status(c));
        match c.hint.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => out.line(format!("\t{}: {status} ({h})", c.name)),
            None => out.line(format!("\t{}: {status}", c.name)),
        }
        if c.name == "configuration" {
            disabled_reasons(cfg, out);
        }
    }
}

/// `{"<server>": {"<mangled name>": {"status": "OK"|"FAILED", "hint": …}}}`; a disabled
/// server's reasons go to `_INFO`.
pub fn json(name: &str, cfg: &ServerConfig, checks: &[Check], out: &mut Output) {
    let mut map = Map::new();
    for c in checks {
        map.insert(mangle(&c.name), json!({"status": status(c), "hint": c.hint.clone().unwrap_or_default()}));
    }
    out.result(name.to_owned(), Value::Object(map));
    if checks.iter().any(|c| c.name == "configuration") {
        disabled_reasons(cfg, out);
    }
}
