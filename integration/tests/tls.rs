//! TLS in our replication client (barman-receive-wal, barman-backup): a real PostgreSQL 15
//! with `ssl = on` and a certificate from a throwaway CA (openssl), whose pg_hba.conf
//! rejects every non-SSL TCP connection, so a connection that gets in is encrypted. Each
//! `sslmode` behaves as libpq's: `require` encrypts without checking the certificate,
//! `verify-ca` checks the chain, `verify-full` the chain and the host name; a server
//! without SSL is refused when SSL is required and used in clear with `prefer`.

use std::fs;
use std::path::Path;
use std::process::Command;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::execute;
use barman_integration::scratch::chown_recursive;
use barman_integration::{cargo_bin, skip_unless, wait_until, OsUser, Outcome, PgCluster, PgOptions, Scratch};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").current_dir(dir).args(args).output()?;
    ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A CA and a server certificate for `localhost` (DNS name only) signed by it; a second,
/// unrelated CA.
fn certificates(dir: &Path) -> Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(&ec);
        let (key, crt, subj) = (format!("{ca}.key"), format!("{ca}.crt"), format!("/CN={ca}"));
        args.extend(["-keyout", &key, "-out", &crt, "-subj", &subj, "-days", "2"]);
        openssl(dir, &args)?;
    }
    let mut args = vec!["req"];
    args.extend_from_slice(&ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &args)?;
    fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    )
}

fn identify(conninfo: &str) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(cargo_bin("barman-receive-wal")?);
    cmd.args(["--identify", "-D"]).arg(dir.path()).args(["-d", conninfo]);
    execute(&mut cmd, None, std::time::Duration::from_mins(1))
}

/// A PostgreSQL 15 with `ssl = on` and the throwaway CA's certificate; its pg_hba.conf
/// rejects every non-SSL TCP connection and asks `scram_user` for a SCRAM password.
fn tls_server(scratch: &Scratch, scram_user: &str) -> Result<(PgCluster, std::path::PathBuf)> {
    let certs = scratch.mkdir("certs")?;
    certificates(&certs)?;
    let postgres = OsUser::lookup("postgres")?;
    let pg_certs = scratch.mkdir("pgcerts")?;
    for f in ["server.crt", "server.key"] {
        fs::copy(certs.join(f), pg_certs.join(f))?;
    }
    chown_recursive(&pg_certs, &postgres)?;
    fs::set_permissions(pg_certs.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let opts = PgOptions::default()
        .conf("ssl = on")
        .conf(format!("ssl_cert_file = '{}'", pg_certs.join("server.crt").display()))
        .conf(format!("ssl_key_file = '{}'", pg_certs.join("server.key").display()));
    let pg = PgCluster::start(scratch, opts)?;
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = fs::read_to_string(&hba)?;
    fs::write(
        &hba,
        format!(
            "hostnossl all all 0.0.0.0/0 reject\nhostnossl replication all 0.0.0.0/0 reject\n\
             hostssl replication {scram_user} 0.0.0.0/0 scram-sha-256\n{rules}"
        ),
    )?;
    pg.psql("select pg_reload_conf()")?;
    Ok((pg, certs))
}

#[test]
fn sslmodes_behave_as_libpq() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("tls")?;
    // Only encrypted TCP connections get in.
    let (pg, certs) = tls_server(&scratch, "nobody_here")?;
    let system_id = pg.system_identifier()?.to_string();
    pg.psql("create table t(g int)")?;
    let port = pg.port();
    let ca = certs.join("ca.crt").display().to_string();
    let other = certs.join("other-ca.crt").display().to_string();
    // Empty HOME: no ~/.postgresql files interfere.
    let base = |host: &str, extra: &str| format!("host={host} port={port} user=postgres {extra}");
    let cases: Vec<(String, bool, &str)> = vec![
        (base("127.0.0.1", "sslmode=disable"), false, "no encryption"),
        (base("127.0.0.1", "sslmode=prefer"), true, ""),
        (base("127.0.0.1", "sslmode=require"), true, ""),
        (base("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}")), true, ""),
        (base("localhost", &format!("sslmode=verify-full sslrootcert={ca}")), true, ""),
        (base("127.0.0.1", &format!("sslmode=verify-full sslrootcert={ca}")), false, "SSL connection failed"),
        (base("localhost", &format!("sslmode=verify-ca sslrootcert={other}")), false, "SSL connection failed"),
        (base("localhost", "sslmode=verify-full sslrootcert=/nonexistent/root.crt"), false, "does not exist"),
        // libpq's compatibility rule: require with a root file verifies the chain.
        (base("localhost", &format!("sslmode=require sslrootcert={other}")), false, "SSL connection failed"),
    ];
    for (conninfo, ok, msg) in &cases {
        let o = identify(conninfo)?;
        if *ok {
            ensure!(
                o.code() == Some(0) && o.stdout_str().contains(&system_id),
                "{conninfo}: {}{}",
                o.stdout_str(),
                o.stderr_str()
            );
        } else {
            ensure!(
                o.code() != Some(0) && o.stderr_str().contains(msg),
                "{conninfo}: expected {msg:?}, got {}{}",
                o.stdout_str(),
                o.stderr_str()
            );
        }
    }

    // A WAL segment streamed over verify-full equals PostgreSQL's own.
    let dest = scratch.mkdir("stream")?;
    let seg = pg.psql("select pg_walfile_name(pg_current_wal_lsn())")?;
    let mut child = Command::new(cargo_bin("barman-receive-wal")?)
        .arg("-D")
        .arg(&dest)
        .args(["-d", &base("localhost", &format!("sslmode=verify-full sslrootcert={ca}")), "--no-loop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let streamed = wait_until(Duration::from_secs(30), "the segment to be streamed over TLS", || {
        if dest.join(format!("{seg}.partial")).exists() || dest.join(&seg).exists() {
            pg.psql("insert into t select g from generate_series(1, 100) g")?;
            pg.switch_wal()?;
        }
        Ok(dest.join(&seg).exists())
    });
    child.kill()?;
    let out = child.wait_with_output()?;
    streamed.with_context(|| format!("barman-receive-wal: {}", String::from_utf8_lossy(&out.stderr)))?;
    let ours = fs::read(dest.join(&seg))?;
    let theirs = fs::read(pg.data_dir().join("pg_wal").join(&seg))?;
    ensure!(ours == theirs, "segment {seg} streamed over TLS differs from pg_wal's");

    // A server without SSL: refused when SSL is required, used in clear with prefer.
    let plain = PgCluster::start(&scratch, PgOptions::default())?;
    let plain_base = |extra: &str| format!("host=127.0.0.1 port={} user=postgres {extra}", plain.port());
    let o = identify(&plain_base("sslmode=require"))?;
    ensure!(
        o.code() != Some(0) && o.stderr_str().contains("server does not support SSL, but SSL was required"),
        "require against a server without SSL: {}",
        o.stderr_str()
    );
    let o = identify(&plain_base("sslmode=prefer"))?;
    ensure!(o.code() == Some(0), "prefer against a server without SSL: {}", o.stderr_str());
    Ok(())
}

/// `channel_binding` as libpq: `require` authenticates with SCRAM-SHA-256-PLUS bound to the
/// server certificate (the server checks the binding, so a wrong hash would be refused), and
/// refuses a login that was not bound; `disable` and `prefer` log in either way.
#[test]
fn channel_binding_as_libpq() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("tls-cb")?;
    let (pg, _certs) = tls_server(&scratch, "cbuser")?;
    pg.psql("create role cbuser login replication password 'cb-secret'")?;
    let system_id = pg.system_identifier()?.to_string();
    let port = pg.port();
    let scram =
        |extra: &str| format!("host=127.0.0.1 port={port} user=cbuser password=cb-secret sslmode=require {extra}");
    for mode in ["require", "prefer", "disable"] {
        let o = identify(&scram(&format!("channel_binding={mode}")))?;
        ensure!(
            o.code() == Some(0) && o.stdout_str().contains(&system_id),
            "channel_binding={mode}: {}",
            o.stderr_str()
        );
    }
    // trust authentication is not channel-bound: require refuses it.
    let trust = format!("host=127.0.0.1 port={port} user=postgres sslmode=require channel_binding=require");
    let o = identify(&trust)?;
    ensure!(
        o.code() != Some(0) && o.stderr_str().contains("server authenticated client without channel binding"),
        "require over trust: {}",
        o.stderr_str()
    );
    // A Unix socket has no TLS to bind to.
    let socket = format!(
        "host={} port={port} user=cbuser password=cb-secret channel_binding=require",
        pg.socket_dir().display()
    );
    let o = identify(&socket)?;
    ensure!(
        o.code() != Some(0) && o.stderr_str().contains("channel binding"),
        "require without TLS: {}",
        o.stderr_str()
    );
    Ok(())
}
