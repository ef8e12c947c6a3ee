//! Backups from a standby with `primary_conninfo`, as Barman 3.20.1's
//! `StandbyPostgreSQLConnection`: while the backup is being stopped on the standby (which,
//! with `archive_mode = always`, waits for its last WAL segment to be archived, and that
//! segment only ends when the primary writes more WAL), a background task connected to the
//! primary calls `pg_switch_wal()` at once and then every 10 seconds, 10 times at most;
//! then, if `primary_checkpoint_timeout` is set, it waits that long and forces a
//! `CHECKPOINT` and a last switch. On an idle primary the backup completes instead of
//! hanging (Barman's #448, #596, #717).
//!
//! With `backup_method = postgres` the stop is the end of the `BASE_BACKUP` stream, so the
//! task runs for the whole stream (Barman reacts to pg_basebackup's "waiting for required WAL
//! segments to be archived" line instead: the switches may come earlier here, never later).

use std::time::Duration;

use barman_common::pg::{ConnInfo, ReplicationConnection};
use tokio::sync::oneshot;

/// WAL switches Barman makes before giving up (or forcing a checkpoint).
const TIMES: u32 = 10;
/// Seconds between two switches.
const WAIT: Duration = Duration::from_secs(10);

/// The background task switching WAL on the primary.
pub(super) struct WalSwitcher {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether the `sql` session's server is a standby.
pub(super) async fn in_recovery(sql: &mut ReplicationConnection) -> bool {
    let rows = sql.simple_query("SELECT pg_is_in_recovery()").await.ok();
    rows.and_then(|rows| rows.into_iter().next().and_then(|r| r.into_iter().next()).flatten()).as_deref() == Some("t")
}

impl WalSwitcher {
    /// Starts switching WAL on `primary` (`None`: nothing to do).
    pub(super) fn start(primary: Option<&ConnInfo>, checkpoint_timeout: Duration) -> Option<WalSwitcher> {
        let primary = primary?.clone();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut conn = match ReplicationConnection::connect_database(&primary).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("cannot connect to the primary (primary_conninfo): {e}");
                    return;
                }
            };
            // The stop may already be over.
            if tokio::time::timeout(Duration::from_secs(1), &mut stopped).await.is_ok() {
                conn.close().await;
                return;
            }
            for _ in 0..TIMES {
                switch(&mut conn, "SELECT pg_switch_wal()").await;
                if tokio::time::timeout(WAIT, &mut stopped).await.is_ok() {
                    conn.close().await;
                    return;
                }
            }
            if !checkpoint_timeout.is_zero() {
                tracing::warn!(
                    "Barman attempted to switch WALs {TIMES} times on the primary server, but the backup has not \
                     yet completed. A checkpoint will be forced on the primary server in {} seconds to ensure the \
                     backup can complete.",
                    checkpoint_timeout.as_secs()
                );
                if tokio::time::timeout(checkpoint_timeout, &mut stopped).await.is_err() {
                    switch(&mut conn, "CHECKPOINT").await;
                    switch(&mut conn, "SELECT pg_switch_wal()").await;
                }
            }
            conn.close().await;
        });
        Some(WalSwitcher { stop, task })
    }

    /// Stops the task and waits for it.
    pub(super) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn switch(conn: &mut ReplicationConnection, sql: &str) {
    if let Err(e) = conn.simple_query(sql).await {
        tracing::warn!("{sql} on the primary failed: {e}");
    }
}
