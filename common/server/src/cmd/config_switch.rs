//! `barman config-switch SERVER MODEL` / `config-switch --reset SERVER`: lays a
//! configuration model (a `model = true` section of the same `cluster`) over a server, as
//! Barman 3.20.1 does: the model's name goes to `<backup_directory>/.active-model.auto`
//! (read by every later command, see `config::checks`), each option the model changes is
//! reported, and the server's receive-wal is restarted with the new settings.

use barman_common::config::ServerConfig;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// The file holding a server's active model.
const ACTIVE_MODEL_FILE: &str = ".active-model.auto";

/// `config-switch [--reset] SERVER [MODEL]`.
pub fn run(ctx: &Context, name: &str, model: Option<&str>, reset: bool, out: &mut Output) -> Result<(), CmdError> {
    if model.is_none() && !reset {
        return Err(CmdError::Error("Either a model name or '--reset' flag need to be given".to_owned()));
    }
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let file = cfg.backup_directory.join(ACTIVE_MODEL_FILE);
    match model {
        Some(model) if !reset => apply(ctx, cfg, model, &file, out)?,
        _ => {
            out.info(format!("Resetting the active model for the server {name}"));
            if file.is_file() {
                std::fs::remove_file(&file)?;
                barman_common::durable::fsync_dir(&cfg.backup_directory)?;
            }
        }
    }
    restart_processes(&ctx.reload()?, name, out)
}

/// `ServerConfig.apply_model(model, from_cli=True)`.
fn apply(
    ctx: &Context,
    cfg: &ServerConfig,
    model: &str,
    file: &std::path::Path,
    out: &mut Output,
) -> Result<(), CmdError> {
    let name = cfg.name();
    let found = ctx.config().model(model).ok_or_else(|| CmdError::Error(format!("Unknown model '{model}'")))?;
    let cluster = cfg.value("cluster").map(ToString::to_string);
    if cluster.as_deref() != found.cluster() {
        return Err(CmdError::Error(format!(
            "Model '{model}' has 'cluster={}', which is not compatible with 'cluster={}' from server '{name}'",
            found.cluster().unwrap_or("None"),
            cluster.as_deref().unwrap_or("None"),
        )));
    }
    if cfg.active_model() == Some(model) {
        out.info(format!("Model '{model}' is already active for server '{name}', skipping..."));
        return Ok(());
    }
    out.info(format!("Applying model '{model}' to server '{name}'"));
    for (key, value) in found.overrides() {
        let old = cfg.value(key).map_or_else(|| "None".to_owned(), ToString::to_string);
        let new = value.to_string();
        if old != new {
            out.info(format!(
                "Changing value of option '{key}' for server '{name}' from '{old}' to '{new}' through the model '{model}'"
            ));
        }
    }
    barman_common::durable::write_replace(file, model.as_bytes(), 0o644)?;
    Ok(())
}

/// `Server.restart_processes`: stop receive-wal, and start it again (with the switched
/// configuration) if the server streams.
pub(crate) fn restart_processes(ctx: &Context, name: &str, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    crate::cmd::terminate_process::stop_if_running(cfg.lock_directory(), name, "receive-wal", out)?;
    if cfg.streaming_archiver && !cfg.is_disabled() {
        let server = ctx.server(name)?;
        crate::cmd::receive_wal::cron(ctx, &server, false, out)?;
    }
    Ok(())
}
