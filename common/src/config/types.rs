//! The enumerated option types (WAL compression, backup method, …), each parsed with the
//! rules and error texts of the matching `barman.config.parse_*` function and printed
//! back with the name Barman uses in its configuration.

use std::fmt;
use std::str::FromStr;

use super::parse::parse_python_int;

/// Declares a fieldless enum whose variants map one-to-one to lower-case config names.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in Barman's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value whose name is exactly `name` (already lower-cased).
            fn from_name(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Quotes and joins names as Python's `"', '".join(...)` does.
fn quoted_list(names: &[&str]) -> String {
    names.join("', '")
}

named_enum! {
    /// WAL compression in the archive (`compression`), in `compression_registry` order.
    Compression {
        /// `gzip` (external `gzip` command in Barman).
        Gzip => "gzip",
        /// `bzip2` (external command).
        Bzip2 => "bzip2",
        /// `pygzip` (in-process gzip).
        Pygzip => "pygzip",
        /// `pybzip2` (in-process bzip2).
        Pybzip2 => "pybzip2",
        /// `pigz` (parallel gzip, gzip format).
        Pigz => "pigz",
        /// `xz`.
        Xz => "xz",
        /// `zstd`.
        Zstd => "zstd",
        /// `lz4`.
        Lz4 => "lz4",
        /// `snappy` (framed).
        Snappy => "snappy",
        /// `custom`: `custom_compression_filter` / `custom_decompression_filter`.
        Custom => "custom",
    }
}

impl FromStr for Compression {
    type Err = String;

    /// `parse_compression`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_lowercase();
        Compression::from_name(&lower).ok_or_else(|| {
            let names: Vec<&str> = Compression::ALL.iter().map(|c| c.as_str()).collect();
            format!("Invalid value: '{lower}' (must be one in: {})", names.join(", "))
        })
    }
}

/// WAL compression level (`compression_level`): a name or an integer (negative allowed,
/// for zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionLevel {
    /// `low`.
    Low,
    /// `medium` (the default).
    Medium,
    /// `high`.
    High,
    /// An explicit level.
    Int(i32),
}

impl FromStr for CompressionLevel {
    type Err = String;

    /// `parse_compression_level`: digits with leading `-`s go through Python `int()`,
    /// otherwise `low`/`medium`/`high` in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_lowercase();
        let unsigned = lower.trim_start_matches('-');
        if !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit()) {
            let n = parse_python_int(&lower)?;
            return i32::try_from(n)
                .map(CompressionLevel::Int)
                .map_err(|_| format!("compression level out of range: {n}"));
        }
        match lower.as_str() {
            "low" => Ok(CompressionLevel::Low),
            "medium" => Ok(CompressionLevel::Medium),
            "high" => Ok(CompressionLevel::High),
            _ => Err(format!("Invalid value: '{lower}' (must be one in [low, medium, high] or an acceptable integer)")),
        }
    }
}

impl fmt::Display for CompressionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionLevel::Low => f.write_str("low"),
            CompressionLevel::Medium => f.write_str("medium"),
            CompressionLevel::High => f.write_str("high"),
            CompressionLevel::Int(n) => write!(f, "{n}"),
        }
    }
}

named_enum! {
    /// How base backups are taken (`backup_method`).
    BackupMethod {
        /// rsync over `ssh_command` (the default).
        Rsync => "rsync",
        /// `pg_basebackup` over the streaming connection.
        Postgres => "postgres",
        /// rsync of a local PGDATA (no `ssh_command`).
        LocalRsync => "local-rsync",
        /// Cloud disk snapshots (out of scope here).
        Snapshot => "snapshot",
        /// Straight to cloud storage (out of scope here).
        LocalToCloud => "local-to-cloud",
    }
}

impl FromStr for BackupMethod {
    type Err = String;

    /// `parse_backup_method`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        let names: Vec<&str> = BackupMethod::ALL.iter().map(|m| m.as_str()).collect();
        BackupMethod::from_name(&s.to_lowercase())
            .ok_or_else(|| format!("Invalid value (must be one in: '{}')", quoted_list(&names)))
    }
}

named_enum! {
    /// rsync incremental copy (`reuse_backup`).
    ReuseBackup {
        /// Copy unchanged files from the previous backup.
        Copy => "copy",
        /// Hard-link unchanged files from the previous backup.
        Link => "link",
        /// No reuse (also what an unset value means).
        Off => "off",
    }
}

impl FromStr for ReuseBackup {
    type Err = String;

    /// `parse_reuse_backup`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        ReuseBackup::from_name(&s.to_lowercase())
            .ok_or_else(|| "Invalid value (use 'copy', 'link' or 'off')".to_owned())
    }
}

named_enum! {
    /// Who creates the replication slot (`create_slot`).
    CreateSlot {
        /// The operator (`barman receive-wal --create-slot`); the default.
        Manual => "manual",
        /// receive-wal / cron create it when missing.
        Auto => "auto",
    }
}

impl FromStr for CreateSlot {
    type Err = String;

    /// `parse_create_slot`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        CreateSlot::from_name(&s.to_lowercase()).ok_or_else(|| "Invalid value (use 'manual' or 'auto')".to_owned())
    }
}

named_enum! {
    /// `pg_basebackup` compression (`backup_compression`).
    BackupCompression {
        /// gzip.
        Gzip => "gzip",
        /// lz4.
        Lz4 => "lz4",
        /// zstd.
        Zstd => "zstd",
        /// `none`: explicitly uncompressed (differs from leaving the option unset).
        NoCompression => "none",
    }
}

impl FromStr for BackupCompression {
    type Err = String;

    /// `parse_backup_compression`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        BackupCompression::from_name(&s.to_lowercase())
            .ok_or_else(|| format!("Invalid value '{s}'(must be one in: ['gzip', 'lz4', 'zstd', 'none'])"))
    }
}

named_enum! {
    /// `backup_compression_format`.
    BackupCompressionFormat {
        /// Decompressed into a plain data directory.
        Plain => "plain",
        /// Kept as tar files.
        Tar => "tar",
    }
}

impl FromStr for BackupCompressionFormat {
    type Err = String;

    /// `parse_backup_compression_format`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        BackupCompressionFormat::from_name(&s.to_lowercase())
            .ok_or_else(|| "Invalid value (must be either `plain` or `tar`)".to_owned())
    }
}

named_enum! {
    /// `backup_compression_location`.
    BackupCompressionLocation {
        /// pg_basebackup compresses.
        Client => "client",
        /// The PostgreSQL server compresses.
        Server => "server",
    }
}

impl FromStr for BackupCompressionLocation {
    type Err = String;

    /// `parse_backup_compression_location`: case-insensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        BackupCompressionLocation::from_name(&s.to_lowercase())
            .ok_or_else(|| "Invalid value (must be either `client` or `server`)".to_owned())
    }
}

named_enum! {
    /// Where `staging_path` lives (`staging_location`).
    StagingLocation {
        /// On the Barman host (the default).
        Local => "local",
        /// On the recovery host.
        Remote => "remote",
    }
}

impl FromStr for StagingLocation {
    type Err = String;

    /// `parse_staging_location`: case-sensitive.
    fn from_str(s: &str) -> Result<Self, String> {
        StagingLocation::from_name(s).ok_or_else(|| format!("Invalid value: {s} (options are: local, remote)"))
    }
}

named_enum! {
    /// One value of `backup_options`.
    BackupOption {
        /// Concurrent (non-exclusive) backup API; the default strategy.
        ConcurrentBackup => "concurrent_backup",
        /// Exclusive backup API (PostgreSQL < 15, rsync only).
        ExclusiveBackup => "exclusive_backup",
        /// Do not copy configuration files outside PGDATA.
        ExternalConfiguration => "external_configuration",
    }
}

named_enum! {
    /// One value of `recovery_options`.
    RecoveryOption {
        /// Recover with `restore_command` calling `barman get-wal`.
        GetWal => "get-wal",
        /// rsync delta restore.
        DeltaRestore => "delta-restore",
    }
}

/// The `CsvOption` parser shared by `backup_options` and `recovery_options`.
pub(crate) trait CsvValue: Sized + Copy + Ord {
    /// Looks a lower-cased, trimmed name up.
    fn lookup(name: &str) -> Option<Self>;
    /// The value that conflicts with this one, if any.
    fn conflict(self) -> Option<Self>;
}

impl CsvValue for BackupOption {
    fn lookup(name: &str) -> Option<Self> {
        BackupOption::from_name(name)
    }

    fn conflict(self) -> Option<Self> {
        match self {
            BackupOption::ConcurrentBackup => Some(BackupOption::ExclusiveBackup),
            BackupOption::ExclusiveBackup => Some(BackupOption::ConcurrentBackup),
            BackupOption::ExternalConfiguration => None,
        }
    }
}

impl CsvValue for RecoveryOption {
    fn lookup(name: &str) -> Option<Self> {
        RecoveryOption::from_name(name)
    }

    fn conflict(self) -> Option<Self> {
        None
    }
}

/// `CsvOption.parse`: split on `,`, walk the raw parts **sorted**, trim and lower-case
/// each, reject unknown names (an empty part included) and conflicting pairs. `source`
/// is Barman's `[section] section` text, which it repeats inside the reason.
pub(crate) fn parse_csv<T: CsvValue + fmt::Display>(
    value: &str,
    key: &str,
    source: &str,
) -> Result<std::collections::BTreeSet<T>, String> {
    let mut set = std::collections::BTreeSet::new();
    if value.is_empty() {
        return Ok(set);
    }
    let mut parts: Vec<&str> = value.split(',').collect();
    parts.sort_unstable();
    for part in parts {
        let name = part.trim().to_lowercase();
        let Some(item) = T::lookup(&name) else {
            return Err(format!("Invalid configuration value '{name}' for key {key} in {source}: Unknown option"));
        };
        if let Some(other) = item.conflict().filter(|o| set.contains(o)) {
            return Err(format!(
                "Invalid configuration value '{name}' for key {key} in {source}: cannot contain \
                 both '{name}' and '{other}'.Configuration directive ignored."
            ));
        }
        set.insert(item);
    }
    Ok(set)
}
