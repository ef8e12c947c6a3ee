//! Tests for the configuration loader: a corpus of real-world `barman.conf` files (the
//! spec's example included), Barman's quirks, and broken files that must fail with
//! `file:line`. Expected texts were checked against Barman 3.20.1.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use tempfile::TempDir;

use super::ini::parse_for_test;
use super::*;

/// A temporary installation: `{dir}` in the texts is replaced by its path.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let text = text.replace("{dir}", &self.dir.path().to_string_lossy());
        fs::write(&path, text).expect("write");
        path
    }

    fn load(&self, rel: &str) -> Loaded {
        Config::load(&self.path(rel)).expect("config loads")
    }

    fn load_err(&self, rel: &str) -> ConfigError {
        Config::load(&self.path(rel)).expect_err("config must fail")
    }

    fn load_strict(&self, rel: &str) -> Result<Loaded, ConfigError> {
        Config::load_with(&self.path(rel), &LoadOptions { strict: true })
    }
}

/// Loads one main file.
fn load_main(text: &str) -> (Fixture, Loaded) {
    let fx = Fixture::new();
    fx.write("barman.conf", text);
    let loaded = fx.load("barman.conf");
    (fx, loaded)
}

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(|w| w.message.clone()).collect()
}

fn server<'a>(loaded: &'a Loaded, name: &str) -> &'a ServerConfig {
    loaded.config.server(name).expect("server exists")
}

const HEADER: &str = "[barman]\nbarman_home = {dir}/home\nbarman_user = barman\n";

// ---------------------------------------------------------------------------------------
// The corpus.

#[test]
fn spec_example_main_file_and_include_directory() {
    let fx = Fixture::new();
    fx.write(
        "barman.conf",
        "; /etc/barman.conf\n[barman]\nbarman_user = barman\nbarman_home = {dir}/home\n\
         configuration_files_directory = {dir}/barman.d\nlog_file = {dir}/log/barman.log\n\
         compression = gzip\nminimum_redundancy = 1\nretention_policy = REDUNDANCY 2\n",
    );
    fx.write(
        "barman.d/pg.conf",
        "; /etc/barman.d/pg.conf  (streaming + put-wal)\n[pg]\ndescription = \"PG15 via streaming\"\n\
         conninfo = host=pg user=barman dbname=postgres\nstreaming_conninfo = host=pg user=streaming_barman\n\
         backup_method = postgres\nstreaming_archiver = on\narchiver = on\nslot_name = barman\n\
         create_slot = auto\npath_prefix = /usr/lib/postgresql/15/bin\n",
    );
    fx.write(
        "barman.d/ssh.conf",
        "; /etc/barman.d/ssh.conf  (rsync)\n[sshpg]\nssh_command = ssh postgres@pg2\n\
         conninfo = host=pg2 user=barman dbname=postgres\nbackup_method = rsync\n\
         backup_options = concurrent_backup\narchiver = on\nretention_policy = RECOVERY WINDOW OF 2 WEEKS\n",
    );
    let loaded = fx.load("barman.conf");
    assert_eq!(messages(&loaded), Vec::<String>::new());
    let config = &loaded.config;
    assert_eq!(config.config_file(), fx.path("barman.conf"));
    assert_eq!(config.loaded_files().len(), 3);
    let g = config.global();
    assert_eq!(g.barman_home, fx.path("home"));
    assert_eq!(g.barman_user, "barman");
    assert_eq!(g.barman_lock_directory, fx.path("home"));
    assert_eq!(g.log_file, Some(fx.path("log/barman.log")));
    assert_eq!(g.log_level, "INFO");
    assert_eq!(g.log_format, DEFAULT_LOG_FORMAT);
    let names: Vec<&str> = config.servers().map(ServerConfig::name).collect();
    assert_eq!(names, ["pg", "sshpg"]);

    let pg = server(&loaded, "pg");
    assert_eq!(pg.description.as_deref(), Some("PG15 via streaming"));
    assert_eq!(pg.conninfo.as_deref(), Some("host=pg user=barman dbname=postgres"));
    assert_eq!(pg.streaming_conninfo.as_deref(), Some("host=pg user=streaming_barman"));
    assert_eq!(pg.backup_method, BackupMethod::Postgres);
    assert!(pg.streaming_archiver && pg.archiver);
    assert_eq!(pg.slot_name.as_deref(), Some("barman"));
    assert_eq!(pg.create_slot, CreateSlot::Auto);
    assert_eq!(pg.path_prefix.as_deref(), Some("/usr/lib/postgresql/15/bin"));
    assert_eq!(pg.compression, Some(Compression::Gzip), "inherited from [barman]");
    assert_eq!(pg.compression_level, Some(CompressionLevel::Medium));
    assert_eq!(pg.minimum_redundancy, 1);
    assert_eq!(pg.retention_policy, Some(RetentionPolicy::Redundancy(2)));
    assert_eq!(pg.wal_retention_policy.as_deref(), Some("main"));
    assert_eq!(pg.backup_options, [BackupOption::ConcurrentBackup].into());
    assert_eq!(pg.backup_directory, fx.path("home/pg"));
    assert_eq!(pg.basebackups_directory, fx.path("home/pg/base"));
    assert_eq!(pg.wals_directory, fx.path("home/pg/wals"));
    assert_eq!(pg.incoming_wals_directory, fx.path("home/pg/incoming"));
    assert_eq!(pg.streaming_wals_directory, fx.path("home/pg/streaming"));
    assert_eq!(pg.errors_directory, fx.path("home/pg/errors"));
    assert_eq!(pg.xlogdb_directory, fx.path("home/pg/wals"));
    assert_eq!(pg.xlogdb_file(), fx.path("home/pg/wals/pg-xlog.db"));
    assert_eq!(pg.meta_directory(), fx.path("home/pg/meta"));
    assert_eq!(pg.lock_directory(), fx.path("home"));
    assert_eq!(pg.cluster.as_deref(), Some("pg"));
    assert_eq!(pg.streaming_archiver_name.as_deref(), Some("barman_receive_wal"));
    assert!(!pg.is_disabled() && !pg.is_passive() && pg.active);
    let source = pg.source("backup_method").expect("has a source");
    assert_eq!(source.section, "pg");
    assert_eq!(source.origin, Origin::new(&fx.path("barman.d/pg.conf"), 6));

    let ssh = server(&loaded, "sshpg");
    assert_eq!(ssh.ssh_command.as_deref(), Some("ssh postgres@pg2"));
    assert_eq!(ssh.backup_method, BackupMethod::Rsync);
    assert_eq!(ssh.backup_options, [BackupOption::ConcurrentBackup].into());
    assert!(ssh.archiver && !ssh.streaming_archiver);
    let window = RetentionPolicy::RecoveryWindow { n: 2, unit: WindowUnit::Weeks };
    assert_eq!(ssh.retention_policy, Some(window));
    assert_eq!(ssh.retention_policy.map(|p| p.to_string()).as_deref(), Some("RECOVERY WINDOW OF 2 WEEKS"));
    assert_eq!(ssh.compression, Some(Compression::Gzip));
    assert!(!ssh.is_disabled());
}

#[test]
fn seed_lines_typed_field_by_field() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}\n[seed]\ndescription = Seed server\nconninfo = host=db1 user=barman dbname=postgres\n\
         ssh_command = ssh postgres@db1\nbackup_method = rsync\nparallel_jobs = 4\n\
         retention_policy = RECOVERY WINDOW OF 2 WEEKS\nlast_backup_maximum_age = 8 DAYS\n\
         archiver = on\nstreaming_archiver = true\nslot_name = Barman_Slot\nprimary_ssh_command = ssh gregg\n"
    ));
    assert_eq!(messages(&loaded), Vec::<String>::new());
    let s = server(&loaded, "seed");
    assert_eq!(s.name(), "seed");
    assert_eq!(s.description.as_deref(), Some("Seed server"));
    assert_eq!(s.conninfo.as_deref(), Some("host=db1 user=barman dbname=postgres"));
    assert_eq!(s.streaming_conninfo, s.conninfo, "streaming_conninfo defaults to conninfo");
    assert_eq!(s.ssh_command.as_deref(), Some("ssh postgres@db1"));
    assert_eq!(s.backup_method, BackupMethod::Rsync);
    assert_eq!(s.parallel_jobs, 4);
    let policy = s.retention_policy.expect("valid policy");
    assert_eq!(policy, RetentionPolicy::RecoveryWindow { n: 2, unit: WindowUnit::Weeks });
    assert_eq!(policy.window(), TimeDelta::try_days(14));
    assert_eq!(s.last_backup_maximum_age, TimeDelta::try_days(8));
    assert!(s.archiver);
    assert!(s.streaming_archiver);
    assert_eq!(s.slot_name.as_deref(), Some("barman_slot"), "slot names are lower-cased");
    assert_eq!(s.primary_ssh_command.as_deref(), Some("ssh gregg"));
    assert!(s.is_passive());
    assert!(!s.is_disabled(), "{:?}", s.disabled_reasons());
    // Passive nodes get no default backup strategy: the rsync executor is never built.
    assert!(s.backup_options.is_empty());
}

#[test]
fn typical_installation_with_hooks_and_tuning() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}compression = pigz\ncompression_level = 9\nparallel_jobs = 2\n\
         pre_backup_script = /usr/local/bin/notify pre\npost_archive_retry_script = /bin/true\n\
         last_backup_minimum_size = 10 Gi\nlast_wal_maximum_age = 1 hour\nmax_incoming_wals_queue = 50\n\
         reuse_backup = LINK\nnetwork_compression = yes\nbandwidth_limit = 4000\n\
         tablespace_bandwidth_limit = tbs1:1000 tbs2:4000 bad\n\
         wal_retention_window = 7 DAYS\nrecovery_options = get-wal, delta-restore\n\
         backup_compression = GZIP\nbackup_compression_format = tar\nbackup_compression_level = 5\n\
         backup_compression_location = server\naws_profile = default\ncloud_wal_restore_parallel = 4\n\
         staging_path = /var/tmp/staging\n\n\
         [main]\nconninfo = host=main\nssh_command = ssh postgres@main\narchiver = on\n"
    ));
    let s = server(&loaded, "main");
    assert_eq!(s.compression, Some(Compression::Pigz));
    assert_eq!(s.compression_level, Some(CompressionLevel::Int(9)));
    assert_eq!(s.parallel_jobs, 2);
    assert_eq!(s.hook_script(HookPhase::Pre, HookEvent::Backup, false), Some("/usr/local/bin/notify pre"));
    assert_eq!(s.hook_script(HookPhase::Post, HookEvent::Archive, true), Some("/bin/true"));
    assert_eq!(s.hook_script(HookPhase::Post, HookEvent::Backup, false), None);
    assert_eq!(s.last_backup_minimum_size, Some(10 * 1024 * 1024 * 1024));
    assert_eq!(s.last_wal_maximum_age, TimeDelta::try_hours(1));
    assert_eq!(s.max_incoming_wals_queue, Some(50));
    assert_eq!(s.reuse_backup, Some(ReuseBackup::Link));
    assert!(s.network_compression);
    assert_eq!(s.bandwidth_limit, Some(4000));
    // A rule equal to the global limit is dropped, as in Barman.
    assert_eq!(s.tablespace_bandwidth_limit, [("tbs1".to_owned(), 1000)].into());
    assert_eq!(s.wal_retention_window, TimeDelta::try_days(7));
    assert_eq!(s.recovery_options, [RecoveryOption::GetWal, RecoveryOption::DeltaRestore].into());
    assert_eq!(s.backup_compression, Some(BackupCompression::Gzip));
    assert_eq!(s.backup_compression_format, Some(BackupCompressionFormat::Tar));
    assert_eq!(s.backup_compression_level, Some(5));
    assert_eq!(s.backup_compression_location, Some(BackupCompressionLocation::Server));
    assert_eq!(s.value("aws_profile"), Some(&OptionValue::Str("default".to_owned())));
    assert_eq!(s.value("cloud_wal_restore_parallel"), Some(&OptionValue::Int(4)));
    assert_eq!(s.staging_path.as_deref(), Some(Path::new("/var/tmp/staging")));
    // rsync refuses backup_compression: the server is disabled, like in Barman.
    assert_eq!(s.disabled_reasons(), ["backup_compression option is not supported by rsync backup_method"]);
    let logged: Vec<&ConfigWarning> = loaded.warnings.iter().filter(|w| w.level == WarningLevel::Log).collect();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].message, "Invalid tablespace_bandwidth_limit rule 'bad'");
}

// ---------------------------------------------------------------------------------------
// Inheritance.

#[test]
fn none_blocks_inheritance_of_text_options_only() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}compression = gzip\narchiver = on\nparallel_jobs = 3\nslot_name = globalslot\n\
         keepalive_interval = 99\ncheck_timeout = 5\nreuse_backup = link\n\
         last_backup_maximum_age = 2 weeks\nprimary_ssh_command = ssh primary\nconninfo = host=global\n\
         ssh_command = ssh global\ndescription = global\nwals_directory = /global/wals\n\n\
         [a]\nconninfo = host=a\n\n\
         [b]\nconninfo = host=b\ncompression = None\narchiver = None\nparallel_jobs =\ncheck_timeout = abc\n\
         reuse_backup = \"None\"\nlast_backup_maximum_age = None\nslot_name = ''\n"
    ));
    let a = server(&loaded, "a");
    assert_eq!(a.compression, Some(Compression::Gzip));
    assert_eq!(a.slot_name.as_deref(), Some("globalslot"));
    assert_eq!(a.primary_ssh_command.as_deref(), Some("ssh primary"));
    assert!(a.is_passive());
    assert_eq!(a.keepalive_interval, 60, "keepalive_interval is not inherited (Barman's typo)");
    assert_eq!(a.ssh_command, None, "ssh_command is not inherited");
    assert_eq!(a.description, None, "description is not inherited");
    assert_eq!(a.wals_directory, PathBuf::from(format!("{}/a/wals", a.barman_home().display())));
    let b = server(&loaded, "b");
    assert_eq!(b.compression, None, "compression = None blocks inheritance");
    assert!(b.archiver, "a boolean 'None' is rejected, then inherited");
    assert_eq!(b.parallel_jobs, 3);
    assert_eq!(b.check_timeout, 5);
    assert_eq!(b.reuse_backup, Some(ReuseBackup::Link));
    assert_eq!(b.last_backup_maximum_age, TimeDelta::try_weeks(2));
    assert_eq!(b.slot_name.as_deref(), Some("globalslot"));
    let boolean = "Invalid boolean representation (must be one in: true|t|yes|1|on | false|f|no|0|off)";
    assert_eq!(
        messages(&loaded),
        [
            format!("Ignoring invalid configuration value '' for key archiver in [b] section: {boolean}"),
            "Ignoring invalid configuration value 'abc' for key check_timeout in [b] section: \
             invalid literal for int() with base 10: 'abc'"
                .to_owned(),
            "Ignoring invalid configuration value '' for key parallel_jobs in [b] section: \
             invalid literal for int() with base 10: ''"
                .to_owned(),
            "Ignoring invalid configuration value 'None' for key reuse_backup in [b] section: \
             Invalid value (use 'copy', 'link' or 'off')"
                .to_owned(),
            "Ignoring invalid configuration value '' for key slot_name in [b] section: Replication slot \
             names may only contain lower case letters, numbers, and the underscore character."
                .to_owned(),
        ]
    );
    let archiver = &loaded.warnings[0];
    assert_eq!(archiver.origin.as_ref().map(|o| o.line), Some(24));
    assert_eq!(archiver.scope, WarningScope::Always);
}

#[test]
fn invalid_global_value_warns_per_server_and_falls_back_to_default() {
    let (_fx, loaded) = load_main(&format!("{HEADER}check_timeout = soon\n[a]\nconninfo = x=1\n[b]\nconninfo = x=2\n"));
    assert_eq!(server(&loaded, "a").check_timeout, 30);
    let expected = "Ignoring invalid configuration value 'soon' for key check_timeout in [barman] section: \
                    invalid literal for int() with base 10: 'soon'";
    assert_eq!(messages(&loaded).iter().filter(|m| *m == expected).count(), 2);
}

#[test]
fn xlogdb_directory_is_inherited_and_follows_wals_directory() {
    let (fx, loaded) = load_main(&format!(
        "{HEADER}barman_lock_directory = {{dir}}/locks\n\n[moved]\nconninfo = h=1\nssh_command = ssh x\n\
         archiver = on\nbackup_directory = {{dir}}/data/moved\nwals_directory = {{dir}}/wals/moved\n\n\
         [shared]\nconninfo = h=1\nssh_command = ssh x\narchiver = on\n"
    ));
    let moved = server(&loaded, "moved");
    assert_eq!(moved.basebackups_directory, fx.path("data/moved/base"));
    assert_eq!(moved.errors_directory, fx.path("data/moved/errors"));
    assert_eq!(moved.wals_directory, fx.path("wals/moved"));
    assert_eq!(moved.xlogdb_directory, fx.path("wals/moved"));
    assert_eq!(moved.meta_directory(), fx.path("data/moved/meta"));
    assert_eq!(moved.lock_directory(), fx.path("locks"));
    assert_eq!(server(&loaded, "shared").xlogdb_directory, fx.path("home/shared/wals"));

    let (fx, loaded) = load_main(&format!("{HEADER}xlogdb_directory = {{dir}}/xlogdb\n[s]\nconninfo = h=1\n"));
    assert_eq!(server(&loaded, "s").xlogdb_directory, fx.path("xlogdb"));
}

// ---------------------------------------------------------------------------------------
// INI dialect and interpolation.

#[test]
fn ini_dialect_matches_configparser() {
    let text = "[barman]\nbarman_home: /h\nCompression = gzip\n\n[pg]\nconninfo = host=a\n  port=5433\n\n   dbname=x\n\
                # comment = 1\n; other\ndescription = 'quoted'\ndescription = \"last wins\"\n[pg] trailing\n\
                ssh_command = ssh a:b = c\nbackup_options = concurrent_backup\n";
    let ini = parse_for_test(text, "t.conf").expect("parses");
    let get = |s: &str, k: &str| ini.get(s, k).expect("interpolates").map(|e| e.text);
    assert_eq!(get("barman", "barman_home").as_deref(), Some("/h"));
    assert_eq!(get("barman", "compression").as_deref(), Some("gzip"));
    assert_eq!(get("pg", "conninfo").as_deref(), Some("host=a\nport=5433\n\ndbname=x"));
    assert_eq!(get("pg", "description").as_deref(), Some("\"last wins\""));
    assert_eq!(get("pg", "ssh_command").as_deref(), Some("ssh a:b = c"));
    assert_eq!(ini.section_names(), ["barman", "pg"]);
    let origin = ini.get("pg", "description").expect("ok").expect("set").origin;
    assert_eq!(origin, Origin::new(Path::new("t.conf"), 13));
}

#[test]
fn crlf_and_cr_line_endings() {
    let ini = parse_for_test("[a]\r\nk = v\r\nj = w\rl = x", "t.conf").expect("parses");
    assert_eq!(ini.get("a", "j").expect("ok").map(|e| e.text).as_deref(), Some("w"));
    assert_eq!(ini.get("a", "l").expect("ok").map(|e| e.origin.line), Some(4));
}

#[test]
fn percent_escapes_and_interpolation() {
    let (fx, loaded) = load_main(
        "[DEFAULT]\nbase = {dir}\n\n[barman]\nbarman_home = %(base)s/home\nlog_file = %(barman_home)s/barman.log\n\
         log_format = %%%%(asctime)s %%%%(message)s\n\n[pg]\nconninfo = host=pg\nssh_command = ssh pg\narchiver = on\nbackup_options = concurrent_backup\n\
         description = \"100%%%% sure\"\npre_backup_script = date +%%%%s\nbackup_directory = %(base)s/pgdata\n",
    );
    let g = loaded.config.global();
    assert_eq!(g.barman_home, fx.path("home"));
    assert_eq!(g.log_file, Some(fx.path("home/barman.log")));
    assert_eq!(g.log_format, "%(asctime)s %(message)s");
    let pg = server(&loaded, "pg");
    assert_eq!(pg.description.as_deref(), Some("100% sure"));
    assert_eq!(pg.hook_script(HookPhase::Pre, HookEvent::Backup, false), Some("date +%s"));
    assert_eq!(pg.backup_directory, fx.path("pgdata"));
    // [DEFAULT] keys land in every section of the file; log_format is unknown to Barman's
    // validator.
    assert_eq!(
        messages(&loaded),
        [
            "Invalid configuration option \"log_format\" in [barman] section.",
            "Invalid configuration option \"base\" in [barman] section.",
            "Invalid configuration option \"base\" in [pg] section.",
        ]
    );
}

#[test]
fn double_percent_alone_is_an_error_as_in_barman() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}[pg]\nconninfo = h=1\npre_backup_script = date +%%s\n"));
    let err = fx.load_err("barman.conf").to_string();
    let at = format!("{}:6:", fx.path("barman.conf").display());
    assert!(err.starts_with(&at), "{err}");
    assert!(err.contains("invalid interpolation syntax") && err.contains("%%%%"), "{err}");
}

#[test]
fn name_is_not_interpolable_in_a_server_section() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}[pg]\nconninfo = h=1\nbackup_directory = /srv/%(name)s\n"));
    let err = fx.load_err("barman.conf").to_string();
    assert!(err.starts_with(&format!("{}:6:", fx.path("barman.conf").display())), "{err}");
    assert!(err.contains("'%(name)s'"), "{err}");
}

#[test]
fn escaped_reference_is_resolved_in_the_merged_section() {
    // `%%(x)s` survives the first pass as `%(x)s` and is resolved against the merged
    // section, here from another file.
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}configuration_files_directory = {{dir}}/d\n"));
    fx.write("d/a.conf", "[pg]\nconninfo = h=1\nssh_command = ssh %%(path_prefix)s\n");
    fx.write("d/b.conf", "[pg]\npath_prefix = pg1\n");
    let loaded = fx.load("barman.conf");
    assert_eq!(server(&loaded, "pg").ssh_command.as_deref(), Some("ssh pg1"));
}

#[test]
fn inline_comments_are_not_stripped() {
    let text = format!(
        "{HEADER}[pg]\nconninfo = h=1\nssh_command = ssh pg\narchiver = on\nretention_policy = REDUNDANCY 2 ; x\n"
    );
    let (fx, loaded) = load_main(&text);
    let pg = server(&loaded, "pg");
    assert_eq!(pg.retention_policy, None);
    assert_eq!(pg.retention_policy_invalid.as_deref(), Some("REDUNDANCY 2 ; x"));
    let w = loaded.warnings.last().expect("a warning");
    assert_eq!(w.message, "Invalid retention_policy setting \"REDUNDANCY 2 ; x\" for server \"pg\"");
    assert_eq!(w.level, WarningLevel::Log);
    assert_eq!(w.scope, WarningScope::Server("pg".to_owned()));
    assert_eq!(w.origin.as_ref().map(|o| o.line), Some(8));
    let err = fx.load_strict("barman.conf").expect_err("strict rejects it").to_string();
    assert_eq!(
        err,
        format!(
            "{}:8: invalid value 'REDUNDANCY 2 ; x' for retention_policy in [pg]: \
             Invalid retention_policy setting \"REDUNDANCY 2 ; x\" for server \"pg\"",
            fx.path("barman.conf").display()
        )
    );
}

// ---------------------------------------------------------------------------------------
// Broken files.

#[test]
fn broken_files_name_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("[barman]\nbarman_home = /h\nthis line is garbage\n", 3, "cannot parse"),
        ("barman_home = /h\n[barman]\n", 1, "before any [section]"),
        ("# comment\n\n  key = v\n[barman]\n", 3, "before any [section]"),
        ("[barman]\nbarman_home = /h\n[pg]\ndescription = 50% off\n", 4, "'%' must be followed by"),
        ("[barman]\nbarman_home = /h\nlog_file = %(barman_home)/x\n", 3, "bad interpolation variable reference"),
        ("[barman]\nbarman_home = /h\nlog_file = %(nowhere)s/x\n", 3, "'%(nowhere)s' is not an option"),
        ("[barman]\nbarman_home = /h\n[pg]\n= value\n", 4, "missing option name"),
        ("[barman]\nbarman_home = /h\na = %(b)s\nb = %(a)s\n", 3, "recursion limit"),
        ("[barman]\nbarman_home = /h\n[pg]\nlog = x\n   %(\n", 4, "bad interpolation variable reference"),
    ];
    for (text, line, needle) in cases {
        let fx = Fixture::new();
        let path = fx.write("barman.conf", text);
        let err = fx.load_err("barman.conf");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{}:{line}: ", path.display())), "{text:?} → {shown}");
        assert!(shown.contains(needle), "{text:?} → {shown}");
        assert_eq!(err.origin(), Some(Origin::new(&path, *line)));
    }
}

#[test]
fn broken_included_file_names_that_file() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}configuration_files_directory = {{dir}}/d\n"));
    fx.write("d/a.conf", "[a]\nconninfo = h=1\n");
    let bad = fx.write("d/b.conf", "[b]\nconninfo = h=1\nssh_command\n");
    let err = fx.load_err("barman.conf").to_string();
    assert!(err.starts_with(&format!("{}:3: cannot parse 'ssh_command'", bad.display())), "{err}");
}

#[test]
fn missing_files_and_sections() {
    let fx = Fixture::new();
    let err = fx.load_err("nope.conf");
    assert_eq!(err.to_string(), format!("Configuration file '{}' does not exist", fx.path("nope.conf").display()));
    fx.write("nobarman.conf", "[pg]\nconninfo = h=1\n");
    assert!(matches!(fx.load_err("nobarman.conf"), ConfigError::NoGlobalSection(_)));
    fx.write("nohome.conf", "[barman]\nbarman_user = barman\n");
    assert_eq!(fx.load_err("nohome.conf").to_string(), "Parameter \"barman_home\" is required in [barman] section.");
}

#[test]
fn forbidden_section_all() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}[all]\nconninfo = h=1\n"));
    let err = fx.load_err("barman.conf");
    assert!(matches!(err, ConfigError::ForbiddenName(ref n) if n == "all"));
    assert_eq!(err.to_string(), "FATAL: the reserved word 'all' is not allowed as server name.Please rename it.");
}

#[test]
fn included_file_may_not_change_barman_section() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}configuration_files_directory = {{dir}}/d\n"));
    fx.write("d/a.conf", "[barman]\nbarman_home = {dir}/home\n[a]\nconninfo = h=1\n");
    fx.write("d/b.conf", "[barman]\n[b]\nconninfo = h=1\n");
    let loaded = fx.load("barman.conf");
    assert_eq!(loaded.config.servers().count(), 2, "unchanged or empty [barman] is fine");
    fx.write("d/c.conf", "[barman]\ncompression = gzip\n");
    let err = fx.load_err("barman.conf");
    assert_eq!(err.to_string(), "FATAL: the configuration file c.conf contains a not empty [barman] section");
}

#[test]
fn include_directory_selection_and_order() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}configuration_files_directory = {{dir}}/d\n[pg]\nconninfo = h=0\n"));
    fx.write("d/b.conf", "[pg]\nconninfo = h=b\n");
    fx.write("d/a.conf", "[pg]\nconninfo = h=a\ndescription = from a\n");
    fx.write("d/.hidden.conf", "[pg]\nconninfo = hidden=1\n");
    fx.write("d/c.conf.disabled", "[pg]\nconninfo = disabled=1\n");
    fs::create_dir_all(fx.path("d/dir.conf")).expect("mkdir");
    let loaded = fx.load("barman.conf");
    let pg = server(&loaded, "pg");
    assert_eq!(pg.conninfo.as_deref(), Some("h=b"), "sorted by name, last wins");
    assert_eq!(pg.description.as_deref(), Some("from a"));
    assert!(messages(&loaded).contains(&"Discarding configuration file: dir.conf (not a file)".to_owned()));
    let source = pg.source("conninfo").expect("set");
    assert_eq!(source.origin.file, fx.path("d/b.conf"));
}

#[test]
fn missing_include_directory_is_only_logged() {
    let (_fx, loaded) = load_main(&format!("{HEADER}configuration_files_directory = /nonexistent/barman.d\n"));
    let w = &loaded.warnings[0];
    assert_eq!(w.level, WarningLevel::Log);
    assert_eq!(
        w.message,
        "Ignoring the \"configuration_files_directory\" option as \"/nonexistent/barman.d\" is not a directory"
    );
}

#[test]
fn auto_conf_is_loaded_last() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}configuration_files_directory = {{dir}}/d\n"));
    fx.write("d/pg.conf", "[pg]\nconninfo = h=1\nactive = true\n");
    fx.write("home/.barman.auto.conf", "[pg]\nactive = false\n");
    let loaded = fx.load("barman.conf");
    assert!(!server(&loaded, "pg").active);
    assert_eq!(loaded.config.loaded_files().last(), Some(&fx.path("home/.barman.auto.conf")));
}

// ---------------------------------------------------------------------------------------
// Warnings and strict mode.

#[test]
fn unknown_option_warning() {
    let (fx, loaded) =
        load_main(&format!("{HEADER}bogus_global = 1\n[pg]\nconninfo = h=1\nBogus_Key = 1\naws_future_option = x\n"));
    assert_eq!(
        messages(&loaded)[..2],
        [
            "Invalid configuration option \"bogus_global\" in [barman] section.",
            "Invalid configuration option \"bogus_key\" in [pg] section.",
        ]
    );
    let w = &loaded.warnings[1];
    assert_eq!(w.origin, Some(Origin::new(&fx.path("barman.conf"), 7)));
    assert_eq!(w.barman_line(), "WARNING: Invalid configuration option \"bogus_key\" in [pg] section.");
    assert_eq!(
        w.to_string(),
        format!("Invalid configuration option \"bogus_key\" in [pg] section. ({}:7)", fx.path("barman.conf").display())
    );
}

#[test]
fn wal_retention_window_is_our_extension() {
    let (_fx, loaded) = load_main(&format!("{HEADER}wal_retention_window = 2 weeks\n[pg]\nconninfo = h=1\n[q]\nconninfo = h=1\nwal_retention_window = None\n"));
    assert!(!messages(&loaded).iter().any(|m| m.contains("wal_retention_window")));
    assert_eq!(server(&loaded, "pg").wal_retention_window, TimeDelta::try_weeks(2));
    // An interval parser returns None for '', so `None` does not block inheritance.
    assert_eq!(server(&loaded, "q").wal_retention_window, TimeDelta::try_weeks(2));
}

#[test]
fn strict_mode_turns_invalid_values_into_errors() {
    let fx = Fixture::new();
    fx.write("barman.conf", &format!("{HEADER}[pg]\nconninfo = h=1\ncheck_timeout = abc\n"));
    let err = fx.load_strict("barman.conf").expect_err("strict");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:6: invalid value 'abc' for check_timeout in [pg]: invalid literal for int() with base 10: 'abc'",
            fx.path("barman.conf").display()
        )
    );
    let ConfigError::InvalidValue(detail) = err else { panic!("not InvalidValue") };
    assert_eq!((detail.key.as_str(), detail.section.as_str(), detail.line), ("check_timeout", "pg", 6));
    let loaded = fx.load("barman.conf");
    assert_eq!(server(&loaded, "pg").check_timeout, 30);
}

#[test]
fn csv_options_and_their_errors() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}[a]\nconninfo = h=1\nbackup_options = exclusive_backup, concurrent_backup\n\
         [b]\nconninfo = h=1\nbackup_options = concurrent_backup,\n[c]\nconninfo = h=1\nrecovery_options = GET-WAL\n"
    ));
    assert_eq!(
        messages(&loaded)[..2],
        [
            "Ignoring invalid configuration value 'exclusive_backup, concurrent_backup' for key backup_options \
             in [a] section: Invalid configuration value 'exclusive_backup' for key backup_options in [a] section: \
             cannot contain both 'exclusive_backup' and 'concurrent_backup'.Configuration directive ignored.",
            "Ignoring invalid configuration value 'concurrent_backup,' for key backup_options in [b] section: \
             Invalid configuration value '' for key backup_options in [b] section: Unknown option",
        ]
    );
    assert_eq!(server(&loaded, "c").recovery_options, [RecoveryOption::GetWal].into());
}

#[test]
fn minimum_redundancy_and_policy_modes() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}[a]\nconninfo = h=1\nminimum_redundancy = -1\nretention_policy_mode = manual\n\
         retention_policy = redundancy 3\nwal_retention_policy = MAIN\n[b]\nconninfo = h=1\nminimum_redundancy = two\n"
    ));
    let a = server(&loaded, "a");
    assert_eq!(a.minimum_redundancy, 0);
    assert_eq!(a.retention_policy_mode, "auto");
    assert_eq!(a.wal_retention_policy.as_deref(), Some("main"));
    assert_eq!(a.retention_policy, Some(RetentionPolicy::Redundancy(3)));
    assert_eq!(server(&loaded, "b").minimum_redundancy, 0);
    let logged: Vec<String> =
        loaded.warnings.iter().filter(|w| w.level == WarningLevel::Log).map(|w| w.message.clone()).collect();
    assert_eq!(
        logged,
        [
            "Negative value of minimum_redundancy \"-1\" for server \"a\" (fallback to \"0\")",
            "Unsupported retention_policy_mode \"manual\" for server \"a\" (fallback to \"auto\")",
            "Unsupported wal_retention_policy value \"MAIN\" for server \"a\" (fallback to \"main\")",
            "Invalid minimum_redundancy \"two\" for server \"b\" (fallback to \"0\")",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Disabled servers and Barman's Server fix-ups.

#[test]
fn disabled_server_reasons() {
    let (_fx, loaded) = load_main(&format!(
        "{HEADER}\
         [noconn]\nssh_command = ssh x\narchiver = on\n\
         [nossh]\nconninfo = host=a\narchiver = on\n\
         [badconn]\nconninfo = host=a nonsense\nssh_command = ssh x\narchiver = on\n\
         [streamonly]\nconninfo = host=a\nssh_command = ssh x\nstreaming_archiver = on\n\
         [pgmethod]\nbackup_method = postgres\nstreaming_archiver = on\nnetwork_compression = on\nreuse_backup = copy\n\
         [local]\nbackup_method = local-rsync\nssh_command = ssh x\nconninfo = h=1\narchiver = on\n\
         [passive]\nprimary_ssh_command = ssh primary\n\
         [inactive]\nactive = false\n\
         [conflict]\nconninfo = h=1\nssh_command = ssh x\narchiver = on\nwals_directory = {{dir}}/w\nerrors_directory = {{dir}}/w\n"
    ));
    let reasons = |name: &str| server(&loaded, name).disabled_reasons().to_vec();
    assert_eq!(reasons("noconn"), ["PostgreSQL connection: Missing 'conninfo' parameter for server 'noconn'"]);
    assert_eq!(reasons("nossh"), ["Missing or invalid ssh_command in barman configuration for server nossh"]);
    assert_eq!(
        reasons("badconn"),
        ["PostgreSQL connection: Cannot connect to postgres: \"host=a nonsense\" is not a valid connection string"]
    );
    assert_eq!(
        reasons("streamonly"),
        ["Streaming-only archiver requires 'streaming_conninfo' and 'slot_name' options to be properly configured"]
    );
    assert_eq!(
        reasons("pgmethod"),
        [
            "PostgreSQL connection: Missing 'conninfo' parameter for server 'pgmethod'",
            "Streaming connection: Missing 'streaming_conninfo' parameter for server 'pgmethod'",
            "reuse_backup option is not supported by postgres backup_method",
            "network_compression option is not supported by postgres backup_method",
            "Streaming-only archiver requires 'streaming_conninfo' and 'slot_name' options to be properly configured",
        ]
    );
    assert_eq!(
        reasons("local"),
        ["Local copy requires ssh_command in barman configuration to be empty for server local"]
    );
    assert!(reasons("passive").is_empty(), "passive nodes need no conninfo");
    assert!(reasons("inactive").is_empty(), "inactive servers are not checked");
    let conflict = reasons("conflict");
    assert_eq!(conflict.len(), 1);
    assert!(conflict[0].starts_with("Conflicting path: wals_directory="), "{conflict:?}");
    assert!(conflict[0].ends_with("/w conflicts with 'errors_directory' for server 'conflict'"), "{conflict:?}");
    assert!(loaded.config.global_errors().is_empty());
}

#[test]
fn two_servers_sharing_a_path_is_a_global_error() {
    let (fx, loaded) = load_main(&format!(
        "{HEADER}[a]\nconninfo = h=1\nbackup_directory = {{dir}}/same\n[b]\nconninfo = h=1\nbackup_directory = {{dir}}/same\n"
    ));
    let same = fx.path("same");
    assert_eq!(
        loaded.config.global_errors()[0],
        format!(
            "Conflicting path: backup_directory={} for server 'b' conflicts with 'backup_directory' for server 'a'",
            same.display()
        )
    );
}

#[test]
fn both_archivers_off_forces_archiver_on() {
    let (_fx, loaded) = load_main(&format!("{HEADER}[pg]\nconninfo = h=1\nssh_command = ssh x\n"));
    assert!(server(&loaded, "pg").archiver);
    let scoped: Vec<&ConfigWarning> =
        loaded.warnings.iter().filter(|w| w.scope == WarningScope::Server("pg".to_owned())).collect();
    let texts: Vec<&str> = scoped.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        texts,
        [
            "No backup strategy set for server 'pg' (using default 'concurrent_backup').",
            "No archiver enabled for server 'pg'. Please turn on 'archiver', 'streaming_archiver' or both",
            "Forcing 'archiver = on'",
        ]
    );
    assert!(scoped.iter().all(|w| w.level == WarningLevel::Warning));
}

// ---------------------------------------------------------------------------------------
// Models.

#[test]
fn models_are_kept_apart_and_applied_when_active() {
    let fx = Fixture::new();
    fx.write(
        "barman.conf",
        &format!(
            "{HEADER}[pg]\nconninfo = host=primary\nssh_command = ssh x\narchiver = on\ncluster = c1\n\
             backup_options = concurrent_backup\n\
             [pg:switched]\nmodel = true\ncluster = c1\nconninfo = host=standby\nbogus = 1\nwals_directory = /x\n"
        ),
    );
    fx.write("home/pg/.active-model.auto", "pg:switched\n");
    let loaded = fx.load("barman.conf");
    assert_eq!(loaded.config.servers().count(), 1);
    let model = loaded.config.model("pg:switched").expect("model");
    assert_eq!(model.cluster(), Some("c1"));
    let pg = server(&loaded, "pg");
    assert_eq!(pg.active_model(), Some("pg:switched"));
    assert_eq!(pg.conninfo.as_deref(), Some("host=standby"));
    assert_eq!(
        messages(&loaded),
        [
            "Invalid configuration option \"bogus\" in [pg:switched] section.",
            "Invalid configuration option \"wals_directory\" in [pg:switched] section.",
        ]
    );
    fx.write("home/pg/.active-model.auto", "gone\n");
    let loaded = fx.load("barman.conf");
    assert_eq!(
        server(&loaded, "pg").disabled_reasons(),
        ["Model 'gone' is set as the active model for the server 'pg' but the model does not exist."]
    );
    fx.write("barman.conf", &format!("{HEADER}[m]\nmodel = on\nconninfo = h=1\n"));
    assert_eq!(fx.load_err("barman.conf").to_string(), "Parameter \"cluster\" is required in [m] section.");
}

// ---------------------------------------------------------------------------------------
// Value parsers.

#[test]
fn booleans() {
    for yes in ["true", "T", "Yes", "1", "ON"] {
        assert_eq!(parse_boolean(yes), Ok(true));
    }
    for no in ["false", "f", "NO", "0", "Off"] {
        assert_eq!(parse_boolean(no), Ok(false));
    }
    assert!(parse_boolean("y").is_err());
    assert!(parse_boolean("").is_err());
}

#[test]
fn python_ints() {
    assert_eq!(parse_python_int(" 42 "), Ok(42));
    assert_eq!(parse_python_int("+3"), Ok(3));
    assert_eq!(parse_python_int("-3"), Ok(-3));
    assert_eq!(parse_python_int("1_000"), Ok(1000));
    assert_eq!(parse_python_int("3.0"), Err("invalid literal for int() with base 10: '3.0'".to_owned()));
    assert_eq!(parse_python_int("a'b"), Err("invalid literal for int() with base 10: \"a'b\"".to_owned()));
    assert!(parse_python_int("1__0").is_err());
}

#[test]
fn sizes_use_si_and_iec_suffixes() {
    let cases = [
        ("10", 10),
        ("1k", 1000),
        ("1Ki", 1024),
        ("2 M", 2_000_000),
        ("2Mi", 2 << 20),
        ("3G", 3_000_000_000),
        ("3Gi", 3 << 30),
        ("1T", 1_000_000_000_000),
        ("1Ti", 1 << 40),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_si_suffix(text), Ok(Some(bytes)), "{text}");
    }
    assert_eq!(parse_si_suffix(""), Ok(None));
    for bad in ["1K", "1 kb", "x", "1.5G", " 1"] {
        assert_eq!(parse_si_suffix(bad), Err(format!("Invalid value for a number {bad}")), "{bad}");
    }
}

#[test]
fn time_intervals() {
    assert_eq!(parse_time_interval("8 DAYS"), Ok(TimeDelta::try_days(8)));
    assert_eq!(parse_time_interval("1 day"), Ok(TimeDelta::try_days(1)));
    assert_eq!(parse_time_interval(" 2  Weeks "), Ok(TimeDelta::try_weeks(2)));
    assert_eq!(parse_time_interval("1 month"), Ok(TimeDelta::try_days(31)));
    assert_eq!(parse_time_interval("3 hours"), Ok(TimeDelta::try_hours(3)));
    assert_eq!(parse_time_interval(""), Ok(None));
    for bad in ["8DAYS", "8 dayss", "eight days", "1 year", "-1 day"] {
        assert_eq!(parse_time_interval(bad), Err(format!("Invalid value for a time interval {bad}")), "{bad}");
    }
}

#[test]
fn retention_policies() {
    let ok = [
        ("REDUNDANCY 2", "REDUNDANCY 2"),
        ("  redundancy   0 ", "REDUNDANCY 0"),
        ("RECOVERY WINDOW OF 2 WEEKS", "RECOVERY WINDOW OF 2 WEEKS"),
        ("recovery window of 1 day", "RECOVERY WINDOW OF 1 DAYS"),
        ("Recovery Window Of 3 Month", "RECOVERY WINDOW OF 3 MONTHS"),
    ];
    for (text, shown) in ok {
        let policy: RetentionPolicy = text.parse().expect(text);
        assert_eq!(policy.to_string(), shown);
    }
    let months: RetentionPolicy = "RECOVERY WINDOW OF 2 MONTHS".parse().expect("valid");
    assert_eq!(months.window(), TimeDelta::try_days(62));
    assert_eq!(RetentionPolicy::Redundancy(1).window(), None);
    for bad in [
        "REDUNDANCY 2 ; x",
        "REDUNDANCY",
        "REDUNDANCY -1",
        "RECOVERY WINDOW 2 DAYS",
        "MAIN",
        "RECOVERY WINDOW OF 2 YEARS",
    ] {
        assert!(bad.parse::<RetentionPolicy>().is_err(), "{bad}");
    }
}

#[test]
fn compression_names() {
    for c in Compression::ALL {
        assert_eq!(c.as_str().parse::<Compression>(), Ok(*c));
    }
    assert_eq!("GZIP".parse::<Compression>(), Ok(Compression::Gzip));
    assert_eq!(
        "rar".parse::<Compression>(),
        Err("Invalid value: 'rar' (must be one in: gzip, bzip2, pygzip, pybzip2, pigz, xz, zstd, lz4, snappy, custom)"
            .to_owned())
    );
    assert_eq!("High".parse::<CompressionLevel>(), Ok(CompressionLevel::High));
    assert_eq!("-5".parse::<CompressionLevel>(), Ok(CompressionLevel::Int(-5)));
    assert!("+5".parse::<CompressionLevel>().is_err());
    assert!("--5".parse::<CompressionLevel>().is_err());
    assert_eq!("LOCAL-RSYNC".parse::<BackupMethod>(), Ok(BackupMethod::LocalRsync));
    assert_eq!(BackupCompression::NoCompression.as_str(), "none");
}

// ---------------------------------------------------------------------------------------
// Finding the file.

#[test]
fn config_file_search_order() {
    let fx = Fixture::new();
    let first = fx.write("one.conf", HEADER);
    let second = fx.write("two.conf", HEADER);
    let missing = fx.path("missing.conf");
    let candidates = [missing.clone(), first.clone(), second.clone()];
    assert_eq!(locate_config_file(Some(&second), Some(first.as_os_str()), &candidates).ok(), Some(second.clone()));
    assert_eq!(locate_config_file(None, Some(second.as_os_str()), &candidates).ok(), Some(second.clone()));
    assert_eq!(locate_config_file(None, None, &candidates).ok(), Some(first.clone()));
    assert_eq!(locate_config_file(None, Some(OsStr::new("")), &candidates).ok(), Some(first));
    let err = locate_config_file(Some(&missing), None, &candidates).expect_err("missing");
    assert_eq!(err.to_string(), format!("Configuration file '{}' does not exist", missing.display()));
    let err = locate_config_file(None, None, &[missing]).expect_err("none");
    assert_eq!(err.to_string(), "Could not find any configuration file at default locations.");
}

#[test]
fn expand_user_uses_home() {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = home {
        assert_eq!(expand_user(Path::new("~/.barman.conf")), home.join(".barman.conf"));
    }
    assert_eq!(expand_user(Path::new("/etc/barman.conf")), PathBuf::from("/etc/barman.conf"));
}
