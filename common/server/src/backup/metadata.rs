//! What Barman records about the server before the copy (its `_pg_get_metadata`): paths,
//! version, segment size, tablespaces, data checksums, cluster size, read over an ordinary
//! SQL session on `conninfo`.

use barman_common::catalogue::{BackupInfo, Tablespace};
use barman_common::pg::{PgError, ReplicationConnection};
use barman_common::wal::WalSegSize;

/// The server facts a backup.info needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `data_directory`.
    pub pgdata: String,
    /// `config_file`, `hba_file`, `ident_file`.
    pub config_file: String,
    /// `hba_file`.
    pub hba_file: String,
    /// `ident_file`.
    pub ident_file: String,
    /// `server_version_num`.
    pub version: u32,
    /// `wal_segment_size`.
    pub segment_size: WalSegSize,
    /// `data_checksums` (`on`/`off`).
    pub data_checksums: String,
    /// `summarize_wal` (PG17+ only).
    pub summarize_wal: Option<String>,
    /// User tablespaces: name, oid, location.
    pub tablespaces: Vec<Tablespace>,
    /// `sum(pg_tablespace_size(oid))`.
    pub cluster_size: Option<u64>,
    /// Configuration files other than `config_file` that set something (`include`s).
    pub included_files: Vec<String>,
}

async fn one_value(conn: &mut ReplicationConnection, sql: &str) -> Result<Option<String>, PgError> {
    let rows = conn.simple_query(sql).await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()).flatten())
}

async fn setting(conn: &mut ReplicationConnection, name: &str) -> Result<String, PgError> {
    one_value(conn, &format!("SHOW {name}"))
        .await?
        .ok_or_else(|| PgError::Protocol(format!("SHOW {name} returned NULL")))
}

/// Reads the facts over `conn` (a database session).
pub async fn read(conn: &mut ReplicationConnection) -> Result<ServerFacts, PgError> {
    let version_text = setting(conn, "server_version_num").await?;
    let version: u32 = version_text
        .parse()
        .map_err(|_| PgError::Protocol(format!("invalid server_version_num \"{version_text}\"")))?;
    let segment_text = setting(conn, "wal_segment_size").await?;
    let segment_size = parse_segment_size(&segment_text)
        .ok_or_else(|| PgError::Protocol(format!("invalid wal_segment_size \"{segment_text}\"")))?;
    let summarize_wal = if version >= 170_000 { Some(setting(conn, "summarize_wal").await?) } else { None };
    let cluster_size =
        one_value(conn, "SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace").await?.and_then(|v| v.parse().ok());
    Ok(ServerFacts {
        pgdata: setting(conn, "data_directory").await?,
        config_file: setting(conn, "config_file").await?,
        hba_file: setting(conn, "hba_file").await?,
        ident_file: setting(conn, "ident_file").await?,
        version,
        segment_size,
        data_checksums: setting(conn, "data_checksums").await?,
        summarize_wal,
        tablespaces: tablespaces(conn).await?,
        cluster_size,
        included_files: included_files(conn).await?,
    })
}

/// Barman's query for `included_files`.
async fn included_files(conn: &mut ReplicationConnection) -> Result<Vec<String>, PgError> {
    let rows = conn
        .simple_query(
            "SELECT DISTINCT sourcefile AS included_file FROM pg_settings WHERE sourcefile IS NOT NULL \
             AND sourcefile NOT IN (SELECT setting FROM pg_settings WHERE name = 'config_file') ORDER BY 1",
        )
        .await?;
    Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
}

async fn tablespaces(conn: &mut ReplicationConnection) -> Result<Vec<Tablespace>, PgError> {
    let rows = conn
        .simple_query(
            "SELECT spcname, oid, pg_tablespace_location(oid) AS spclocation FROM pg_tablespace \
             WHERE pg_tablespace_location(oid) != '' ORDER BY oid",
        )
        .await?;
    rows.into_iter()
        .map(|row| match row.as_slice() {
            [Some(name), Some(oid), Some(location), ..] => Ok(Tablespace {
                name: name.clone(),
                oid: oid.parse().map_err(|_| PgError::Protocol(format!("invalid tablespace oid \"{oid}\"")))?,
                location: location.clone(),
            }),
            _ => Err(PgError::Protocol("unexpected pg_tablespace row".into())),
        })
        .collect()
}

/// `SHOW wal_segment_size` in a database session: `16MB`, `1GB`, or (in some settings) a
/// bare byte count.
fn parse_segment_size(text: &str) -> Option<WalSegSize> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    WalSegSize::new(number.parse::<u64>().ok()?.checked_mul(multiplier)?).ok()
}

impl ServerFacts {
    /// Copies the facts into `info`, as Barman does before the backup starts.
    pub fn fill(&self, info: &mut BackupInfo) {
        info.pgdata = Some(self.pgdata.clone());
        info.config_file = Some(self.config_file.clone());
        info.hba_file = Some(self.hba_file.clone());
        info.ident_file = Some(self.ident_file.clone());
        info.version = Some(self.version);
        info.xlog_segment_size = Some(self.segment_size);
        info.data_checksums = Some(self.data_checksums.clone());
        info.summarize_wal.clone_from(&self.summarize_wal);
        info.tablespaces = (!self.tablespaces.is_empty()).then(|| self.tablespaces.clone());
        info.cluster_size = self.cluster_size;
        info.included_files = (!self.included_files.is_empty()).then(|| self.included_files.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes() {
        assert_eq!(parse_segment_size("16MB").map(WalSegSize::bytes), Some(16 << 20));
        assert_eq!(parse_segment_size("1GB").map(WalSegSize::bytes), Some(1 << 30));
        assert_eq!(parse_segment_size("16777216").map(WalSegSize::bytes), Some(16 << 20));
        assert_eq!(parse_segment_size("3MB"), None);
        assert_eq!(parse_segment_size("16 parsecs"), None);
    }
}
