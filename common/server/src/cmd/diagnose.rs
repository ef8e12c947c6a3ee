//! `barman diagnose [--show-config-source]`: one JSON document for support, shaped as Barman
//! 3.20.1's `exec_diagnose` (`global` config and system info, per-server config, messages,
//! active model, backups and last archived WAL per timeline, `models`), printed with
//! Python's `json.dumps(indent=4, sort_keys=True)` layout. With `--show-config-source`, each
//! server or model option becomes `{"value": …, "source": <file>}`. The live PostgreSQL
//! status and the remote system information Barman adds are not collected here.

use barman_common::catalogue::{python_json, Catalogue, XlogDb};
use barman_common::config::{Config, ServerConfig};
use serde_json::{json, Map, Value};

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// `diagnose`.
pub fn run(ctx: &Context, show_config_source: bool, out: &mut Output) -> Result<(), CmdError> {
    let config = ctx.config();
    let mut servers = Map::new();
    for server in config.servers() {
        servers.insert(server.name().to_owned(), server_section(server, show_config_source));
    }
    let mut models = Map::new();
    for model in config.models() {
        let options: Map<String, Value> = model
            .overrides()
            .map(|(k, v)| (k.to_owned(), sourced(Value::String(v.to_string()), None, show_config_source)))
            .collect();
        models.insert(model.name().to_owned(), json!({ "config": options }));
    }
    let diagnosis = json!({
        "global": {"config": global_config(config), "system_info": system_info()},
        "servers": servers,
        "models": models,
    });
    out.info(python_json(&diagnosis, Some(4), true));
    Ok(())
}

fn sourced(value: Value, source: Option<&str>, show: bool) -> Value {
    if show {
        json!({"value": value, "source": source})
    } else {
        value
    }
}

fn global_config(config: &Config) -> Value {
    let g = config.global();
    let path = |p: &std::path::Path| Value::String(p.display().to_string());
    json!({
        "barman_home": path(&g.barman_home),
        "barman_user": g.barman_user,
        "barman_lock_directory": path(&g.barman_lock_directory),
        "lock_directory_cleanup": g.lock_directory_cleanup,
        "config_changes_queue": path(&g.config_changes_queue),
        "log_file": g.log_file.as_deref().map(path),
        "log_level": g.log_level,
        "log_format": g.log_format,
        "configuration_files_directory": g.configuration_files_directory.as_deref().map(path),
        "errors_list": config.global_errors(),
    })
}

pub(crate) fn system_info() -> Value {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname.as_ref().map(|u| f(u).to_string_lossy().into_owned())
    };
    json!({
        "barman_ver": barman_common::catalogue::sync::VERSION,
        "kernel_ver": field(|u| u.release()),
        "hostname": field(|u| u.nodename()),
        "timestamp": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
    })
}

fn server_section(server: &ServerConfig, show: bool) -> Value {
    let options: Map<String, Value> = server
        .values()
        .map(|(k, v)| {
            let source = server.source(k).map(|s| s.origin.file.display().to_string());
            (k.to_owned(), sourced(Value::String(v.to_string()), source.as_deref(), show))
        })
        .collect();
    let layout = layout(server);
    let mut backups = Map::new();
    if let Ok(catalogue) = Catalogue::load(&layout) {
        for (id, info) in catalogue.entries() {
            backups.insert(id.to_string(), barman_common::catalogue::sync::backup_to_json(id, info));
        }
    }
    json!({
        "config": options,
        "msg_list": server.disabled_reasons(),
        "active_model": server.active_model(),
        "backups": backups,
        "wals": {"last_archived_wal_per_timeline": last_wal_per_timeline(&layout)},
    })
}

/// Barman's `get_latest_archived_wals_info`: per timeline (hex, 8 digits), the last segment
/// in xlog.db with its size, time and compression.
fn last_wal_per_timeline(layout: &barman_common::catalogue::ServerLayout) -> Value {
    let mut per_tli = Map::new();
    let Ok(entries) = XlogDb::open(layout).and_then(|mut db| db.entries()) else { return Value::Object(per_tli) };
    for (_, e) in entries.iter().filter(|(_, e)| e.name.is_segment()) {
        per_tli.insert(
            format!("{:08X}", e.name.timeline().get()),
            json!({"name": e.name.to_string(), "size": e.size, "time": e.time, "compression": e.compression}),
        );
    }
    Value::Object(per_tli)
}
