//! libpq connection strings: `key=value` lists and `postgres://` URIs, the `PG*`
//! environment variables, and the password file (`~/.pgpass`).
//!
//! Resolution follows libpq: an explicit value wins over the environment, which wins over
//! the default. A `host` starting with `/` is a Unix socket directory. The password comes
//! from the string, then `PGPASSWORD`, then the password file (`passfile`, `PGPASSFILE`,
//! `~/.pgpass`, ignored unless its mode is 0600 or stricter). `service` fills unset options
//! from a service file ([`super::service`]); a comma-separated `host` (with `port` and
//! `hostaddr` lists) gives one [`ConnTarget`] per host, tried in order. Every accepted
//! keyword is honoured or refused (see [`super::connopts`]); `sslpassword` (encrypted client
//! keys) is refused.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::connopts::{self, ChannelBindingMode, Keepalives, SessionAttrs, TlsVersion, TlsVersions};
use super::{service, PgError};

/// The default Unix socket directory of Debian's PostgreSQL (libpq's `DEFAULT_PGSOCKET_DIR`).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;

/// libpq keywords accepted. `krbsrvname` and `gsslib` only matter to GSSAPI authentication,
/// which this client refuses (as a libpq built without it does), `sslcompression` is ignored
/// by libpq itself since PostgreSQL 14, and `replication` is decided by the tool (as
/// pg_receivewal does): those four are accepted and have nothing to do.
const KNOWN_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "dbname",
    "password",
    "passfile",
    "sslmode",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "replication",
    "options",
    "client_encoding",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "sslpassword",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "channel_binding",
    "service",
];

/// `sslmode`, with libpq's meanings (see the `tls` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SslMode {
    /// `disable`: plaintext.
    Disable,
    /// `allow`: plaintext (TLS only if the server insists; it never does without hostssl).
    Allow,
    /// `prefer` (libpq's default): TLS if the server accepts it, certificate not checked.
    #[default]
    Prefer,
    /// `require`: TLS is mandatory; the certificate is checked only if a root file exists.
    Require,
    /// `verify-ca`: TLS, the certificate chains to `sslrootcert`.
    VerifyCa,
    /// `verify-full`: `verify-ca` plus the host name.
    VerifyFull,
}

/// A parsed connection string; unset fields are filled from the environment by
/// [`ConnInfo::resolve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    params: BTreeMap<String, String>,
}

/// Where and how to connect, with every default applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnTarget {
    /// Host name or address, or a socket directory (starts with `/`).
    pub host: String,
    /// TCP port, also the socket file's suffix.
    pub port: u16,
    /// The role to log in as.
    pub user: String,
    /// The database name (only used for the password file; physical replication ignores it).
    pub dbname: String,
    /// The password, if one was found.
    pub password: Option<String>,
    /// `sslmode`.
    pub sslmode: SslMode,
    /// `sslrootcert` (default `~/.postgresql/root.crt`).
    pub sslrootcert: Option<PathBuf>,
    /// `sslcert` (default `~/.postgresql/postgresql.crt`).
    pub sslcert: Option<PathBuf>,
    /// `sslkey` (default `~/.postgresql/postgresql.key`).
    pub sslkey: Option<PathBuf>,
    /// `application_name` sent at startup.
    pub application_name: Option<String>,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `hostaddr`: the numeric address to connect to (`host` still names the server for
    /// TLS and the password file).
    pub hostaddr: Option<String>,
    /// `options`: command-line options sent to the server at startup.
    pub options: Option<String>,
    /// `client_encoding` sent at startup (`auto` is sent as `UTF8`).
    pub client_encoding: Option<String>,
    /// TCP keepalives.
    pub keepalives: Keepalives,
    /// `tcp_user_timeout`.
    pub tcp_user_timeout: Option<Duration>,
    /// `target_session_attrs`.
    pub target_session_attrs: SessionAttrs,
    /// `channel_binding`.
    pub channel_binding: ChannelBindingMode,
    /// `requirepeer`: the OS user that must own the server process (Unix sockets).
    pub requirepeer: Option<String>,
    /// `sslsni` (default on): send the host name in the TLS handshake.
    pub sslsni: bool,
    /// `ssl_min_protocol_version` / `ssl_max_protocol_version`.
    pub ssl_versions: TlsVersions,
    /// `sslcrl`: a certificate revocation list file, checked when verifying the server.
    pub sslcrl: Option<PathBuf>,
    /// `sslcrldir`: a directory of revocation lists.
    pub sslcrldir: Option<PathBuf>,
}

impl ConnTarget {
    /// Whether `host` names a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The socket path (`<dir>/.s.PGSQL.<port>`) or `host:port`, for messages.
    pub fn describe(&self) -> String {
        if self.is_unix_socket() {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl ConnInfo {
    /// Parses a `key=value ...` string or a `postgres://`/`postgresql://` URI. An empty
    /// string gives an empty [`ConnInfo`].
    pub fn parse(text: &str) -> Result<ConnInfo, PgError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_uri(trimmed)
        } else {
            parse_keyword_value(text)
        }
    }

    /// Whether `text` looks like a connection string rather than a bare database name
    /// (libpq's `recognized_connection_string`).
    pub fn is_conninfo(text: &str) -> bool {
        text.contains('=') || text.starts_with("postgresql://") || text.starts_with("postgres://")
    }

    /// Sets `key` (a libpq keyword) to `value`, replacing any earlier value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PgError> {
        if !KNOWN_KEYWORDS.contains(&key) {
            return Err(PgError::ConnInfo(format!("invalid connection option \"{key}\"")));
        }
        if key == "port" && !value.is_empty() {
            for port in value.split(',').filter(|p| !p.is_empty()) {
                parse_port(port)?;
            }
        }
        validate(key, value)?;
        self.params.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// The value of `key`, if set (and not empty).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Applies the service file, the environment (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
    /// `PGPASSFILE`...) and libpq's defaults: one target per listed host.
    pub fn resolve(&self) -> Result<Vec<ConnTarget>, PgError> {
        self.resolve_all_with(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()), home_dir().as_deref())
    }

    /// The first target of [`ConnInfo::resolve_all_with`] (for tests).
    pub fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<ConnTarget, PgError> {
        let mut all = self.resolve_all_with(env, home)?;
        Ok(all.remove(0))
    }

    /// [`ConnInfo::resolve`] with an explicit environment and home directory.
    pub fn resolve_all_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Vec<ConnTarget>, PgError> {
        let merged = self.with_service(env, home)?;
        // `var` is the PG* environment variable libpq reads for `key`; "" where it has none
        // (keepalives*, tcp_user_timeout): then only the connection string counts.
        let pick = |key: &str, var: &str| {
            merged.get(key).map(str::to_owned).or_else(|| if var.is_empty() { None } else { env(var) })
        };
        let hosts = list(pick("host", "PGHOST"));
        let hostaddrs = list(pick("hostaddr", "PGHOSTADDR"));
        let ports = list(pick("port", "PGPORT"));
        let count = hosts.len().max(hostaddrs.len()).max(1);
        for (what, n) in [("host names", hosts.len()), ("hostaddr values", hostaddrs.len())] {
            if n > 1 && n != count {
                return Err(PgError::ConnInfo(format!("could not match {n} {what} to {count} hosts")));
            }
        }
        if ports.len() > 1 && ports.len() != count {
            return Err(PgError::ConnInfo(format!("could not match {} port numbers to {count} hosts", ports.len())));
        }
        let template = settings(&pick, &merged, home)?;
        connopts::check_gssencmode(&pick("gssencmode", "PGGSSENCMODE").unwrap_or_default())?;
        if merged.get("sslpassword").is_some() {
            return Err(PgError::Unsupported(
                "sslpassword is not supported (encrypted client keys): decrypt the key given as sslkey".into(),
            ));
        }
        let nth = |items: &[String], i: usize| {
            items.get(if items.len() == 1 { 0 } else { i }).cloned().filter(|v| !v.is_empty())
        };
        let mut targets = Vec::with_capacity(count);
        for i in 0..count {
            let hostaddr = nth(&hostaddrs, i);
            let mut target = template.clone();
            target.host = nth(&hosts, i).or_else(|| hostaddr.clone()).unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_owned());
            target.hostaddr = hostaddr;
            target.port = nth(&ports, i).map(|p| parse_port(&p)).transpose()?.unwrap_or(DEFAULT_PORT);
            target.password = pick("password", "PGPASSWORD").or_else(|| {
                let file = pick("passfile", "PGPASSFILE")
                    .map(PathBuf::from)
                    .or_else(|| home.as_ref().map(|h| h.join(".pgpass")));
                file.and_then(|f| password_from_file(&f, &target))
            });
            targets.push(target);
        }
        Ok(targets)
    }

    /// This connection string with the unset options filled from its service, if it names
    /// one (`service`, else `PGSERVICE`).
    fn with_service(&self, env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<ConnInfo, PgError> {
        let Some(name) = self.get("service").map(str::to_owned).or_else(|| env("PGSERVICE")) else {
            return Ok(self.clone());
        };
        let mut merged = self.clone();
        for (key, value) in service::lookup(&name, env, home)? {
            if merged.get(&key).is_none() {
                merged.set(&key, &value)?;
            }
        }
        Ok(merged)
    }
}

/// Everything but the host, port and password: the same for every listed host.
fn settings(
    pick: &dyn Fn(&str, &str) -> Option<String>,
    merged: &ConnInfo,
    home: Option<&Path>,
) -> Result<ConnTarget, PgError> {
    let user = pick("user", "PGUSER").or_else(os_user_name).unwrap_or_else(|| "postgres".to_owned());
    let dbname = pick("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
    let sslmode = pick("sslmode", "PGSSLMODE").map(|m| parse_sslmode(&m)).transpose()?.unwrap_or_default();
    let application_name =
        pick("application_name", "PGAPPNAME").or_else(|| merged.get("fallback_application_name").map(str::to_owned));
    let seconds = |key: &str, var: &str| -> Result<Option<u32>, PgError> {
        pick(key, var).map(|t| connopts::parse_int(key, &t)).transpose()
    };
    let connect_timeout = seconds("connect_timeout", "PGCONNECT_TIMEOUT")?
        .filter(|&s| s > 0)
        .map(|s| Duration::from_secs(u64::from(s.max(2))));
    let ssl_file = |key: &str, var: &str, default: &str| {
        pick(key, var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".postgresql").join(default)))
    };
    let keepalives = Keepalives {
        enabled: seconds("keepalives", "")?.is_none_or(|v| v != 0),
        idle: seconds("keepalives_idle", "")?.map(|s| Duration::from_secs(s.into())),
        interval: seconds("keepalives_interval", "")?.map(|s| Duration::from_secs(s.into())),
        count: seconds("keepalives_count", "")?,
    };
    let client_encoding = pick("client_encoding", "PGCLIENTENCODING").map(|e| {
        if e.eq_ignore_ascii_case("auto") {
            "UTF8".to_owned()
        } else {
            e
        }
    });
    Ok(ConnTarget {
        host: String::new(),
        port: DEFAULT_PORT,
        user,
        dbname,
        password: None,
        sslmode,
        sslrootcert: ssl_file("sslrootcert", "PGSSLROOTCERT", "root.crt"),
        sslcert: ssl_file("sslcert", "PGSSLCERT", "postgresql.crt"),
        sslkey: ssl_file("sslkey", "PGSSLKEY", "postgresql.key"),
        application_name,
        connect_timeout,
        hostaddr: None,
        options: pick("options", "PGOPTIONS"),
        client_encoding,
        keepalives,
        tcp_user_timeout: seconds("tcp_user_timeout", "")?
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms.into())),
        target_session_attrs: pick("target_session_attrs", "PGTARGETSESSIONATTRS")
            .map(|v| SessionAttrs::parse(&v))
            .transpose()?
            .unwrap_or_default(),
        channel_binding: pick("channel_binding", "PGCHANNELBINDING")
            .map(|v| ChannelBindingMode::parse(&v))
            .transpose()?
            .unwrap_or_default(),
        requirepeer: pick("requirepeer", "PGREQUIREPEER"),
        sslsni: pick("sslsni", "PGSSLSNI").is_none_or(|v| v != "0"),
        ssl_versions: TlsVersions::new(
            pick("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION")
                .map(|v| TlsVersion::parse("ssl_min_protocol_version", &v))
                .transpose()?
                .flatten(),
            pick("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION")
                .map(|v| TlsVersion::parse("ssl_max_protocol_version", &v))
                .transpose()?
                .flatten(),
        )?,
        sslcrl: ssl_file("sslcrl", "PGSSLCRL", "root.crl"),
        sslcrldir: pick("sslcrldir", "PGSSLCRLDIR").map(PathBuf::from),
    })
}

/// A comma-separated libpq list (`host=a,b`); an absent value is an empty list.
fn list(value: Option<String>) -> Vec<String> {
    value.map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()).unwrap_or_default()
}

/// Rejects, when set, the values libpq rejects.
fn validate(key: &str, value: &str) -> Result<(), PgError> {
    if value.is_empty() {
        return Ok(());
    }
    match key {
        "sslmode" => parse_sslmode(value).map(drop),
        "target_session_attrs" => SessionAttrs::parse(value).map(drop),
        "channel_binding" => ChannelBindingMode::parse(value).map(drop),
        "gssencmode" => connopts::check_gssencmode(value),
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => TlsVersion::parse(key, value).map(drop),
        "connect_timeout"
        | "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "keepalives_count"
        | "tcp_user_timeout" => connopts::parse_int(key, value).map(drop),
        _ => Ok(()),
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.dir))
}

fn os_user_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name)
}

fn parse_port(value: &str) -> Result<u16, PgError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| PgError::ConnInfo(format!("invalid port number: \"{value}\"")))
}

fn parse_sslmode(value: &str) -> Result<SslMode, PgError> {
    match value {
        "disable" => Ok(SslMode::Disable),
        "allow" => Ok(SslMode::Allow),
        "prefer" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        "verify-ca" => Ok(SslMode::VerifyCa),
        "verify-full" => Ok(SslMode::VerifyFull),
        other => Err(PgError::ConnInfo(format!("invalid sslmode value: \"{other}\""))),
    }
}

/// `key = value` pairs; values may be single-quoted with `\'` and `\\` escapes.
fn parse_keyword_value(text: &str) -> Result<ConnInfo, PgError> {
    let mut info = ConnInfo::default();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(info);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(PgError::ConnInfo(format!("missing \"=\" after \"{key}\" in connection info string")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = read_value(&mut chars)?;
        info.set(&key, &value)?;
    }
}

fn read_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, PgError> {
    let mut value = String::new();
    if chars.next_if_eq(&'\'').is_some() {
        loop {
            match chars.next() {
                None => return Err(PgError::ConnInfo("unterminated quoted string in connection info string".into())),
                Some('\'') => return Ok(value),
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
            }
        }
    }
    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
        if c == '\\' {
            value.extend(chars.next());
        } else {
            value.push(c);
        }
    }
    Ok(value)
}

/// `postgres://[user[:password]@][host][:port][/dbname][?key=value&...]`, percent-decoded.
fn parse_uri(text: &str) -> Result<ConnInfo, PgError> {
    let rest = text.split_once("://").map_or("", |(_, r)| r);
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let mut info = ConnInfo::default();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = userinfo.split_once(':').map_or((userinfo, None), |(u, p)| (u, Some(p)));
            info.set("user", &percent_decode(user)?)?;
            if let Some(p) = password {
                info.set("password", &percent_decode(p).map_err(|_| secret_token())?)?;
            }
            hostport
        }
        None => authority,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) =
            v6.split_once(']').ok_or_else(|| PgError::ConnInfo(format!("invalid URI \"{}\"", redact_uri(text))))?;
        (h, after.strip_prefix(':'))
    } else {
        hostport.split_once(':').map_or((hostport, None), |(h, p)| (h, Some(p)))
    };
    if !host.is_empty() {
        info.set("host", &percent_decode(host)?)?;
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        info.set("port", p)?;
    }
    if !path.is_empty() {
        info.set("dbname", &percent_decode(path)?)?;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| PgError::ConnInfo(format!("missing \"=\" in URI parameter \"{pair}\"")))?;
        let key = percent_decode(k)?;
        let value = if key == "password" { percent_decode(v).map_err(|_| secret_token())? } else { percent_decode(v)? };
        info.set(&key, &value)?;
    }
    Ok(info)
}

/// A percent-decoding error in a password: the token is not repeated (errors are logged).
fn secret_token() -> PgError {
    PgError::ConnInfo("invalid percent-encoded token in the password".into())
}

/// `text` with the password of its `user:password@` part replaced by `********`, for
/// error messages.
pub fn redact_uri(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else { return text.to_owned() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:********@{host}{}", &rest[end..])
        }
        _ => text.to_owned(),
    }
}

fn percent_decode(text: &str) -> Result<String, PgError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| PgError::ConnInfo(format!("invalid percent-encoded token: \"{text}\"")))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PgError::ConnInfo(format!("invalid percent-encoded token: \"{text}\"")))
}

/// Looks the target up in a password file (`host:port:database:user:password`, `*`
/// wildcards, `\:` and `\\` escapes). Like libpq, a file readable by group or others is
/// ignored (with a warning) and a socket in the default directory matches `localhost`.
/// Replication connections match the database `replication`.
pub fn password_from_file(file: &Path, target: &ConnTarget) -> Option<String> {
    let meta = fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        );
        return None;
    }
    let text = fs::read_to_string(file).ok()?;
    let host =
        if target.host == DEFAULT_SOCKET_DIR || target.host == "/tmp" { "localhost" } else { target.host.as_str() };
    let port = target.port.to_string();
    text.lines().filter(|l| !l.trim_start().starts_with('#')).find_map(|line| {
        let fields = split_pgpass_line(line);
        let [h, p, d, u, pw] = fields.as_slice() else { return None };
        let matches = |field: &str, value: &str| field == "*" || field == value;
        (matches(h, host) && matches(p, &port) && matches(d, "replication") && matches(u, &target.user))
            .then(|| pw.clone())
    })
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("never empty").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn uri_errors_never_show_the_password() {
        for uri in
            ["postgresql://u:s3cr%ZZet@h/db", "postgresql://u:s3cret@[::1/db", "postgresql://h/db?password=s3%ZZ"]
        {
            let err = ConnInfo::parse(uri).expect_err(uri).to_string();
            assert!(!err.contains("s3cr") && !err.contains("s3%"), "{uri}: {err}");
        }
        assert_eq!(redact_uri("postgres://u:pw@h:5/d?x=1"), "postgres://u:********@h:5/d?x=1");
        assert_eq!(redact_uri("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn keyword_value_strings() {
        let info = ConnInfo::parse("host=/tmp/x port = 5433 user='o\\'brien' application_name=barman_receive_wal")
            .expect("parses");
        let t = info.resolve_with(&no_env, None).expect("resolves");
        assert_eq!((t.host.as_str(), t.port, t.user.as_str()), ("/tmp/x", 5433, "o'brien"));
        assert!(t.is_unix_socket());
        assert_eq!(t.describe(), "/tmp/x/.s.PGSQL.5433");
        assert_eq!(t.application_name.as_deref(), Some("barman_receive_wal"));
    }

    #[test]
    fn errors_are_libpq_like() {
        let e = ConnInfo::parse("host=x bogus=1").expect_err("unknown keyword");
        assert!(e.to_string().contains("invalid connection option \"bogus\""), "{e}");
        assert!(ConnInfo::parse("host").is_err());
        assert!(ConnInfo::parse("port=abc").is_err());
        assert!(ConnInfo::parse("sslmode=maybe").is_err());
        assert!(ConnInfo::parse("user='unterminated").is_err());
    }

    #[test]
    fn uris() {
        let info =
            ConnInfo::parse("postgresql://rep:s%3Acret@db.example:6543/postgres?sslmode=disable&application_name=a")
                .expect("parses");
        let t = info.resolve_with(&no_env, None).expect("resolves");
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()),
            ("db.example", 6543, "rep", "postgres")
        );
        assert_eq!(t.password.as_deref(), Some("s:cret"));
        assert_eq!(t.sslmode, SslMode::Disable);
        let sock = ConnInfo::parse("postgres://%2Fvar%2Frun%2Fpg:5/x").expect("parses");
        assert_eq!(sock.get("host"), Some("/var/run/pg"));
        let v6 = ConnInfo::parse("postgres://[::1]:7/").expect("parses");
        assert_eq!((v6.get("host"), v6.get("port")), (Some("::1"), Some("7")));
    }

    #[test]
    fn host_lists_give_one_target_each() {
        let info = ConnInfo::parse("host=a,b port=1,2 hostaddr=10.0.0.1,10.0.0.2 keepalives_idle=30").expect("parses");
        let all = info.resolve_all_with(&no_env, None).expect("resolves");
        let got: Vec<_> = all.iter().map(|t| (t.host.as_str(), t.port, t.hostaddr.as_deref())).collect();
        assert_eq!(got, vec![("a", 1, Some("10.0.0.1")), ("b", 2, Some("10.0.0.2"))]);
        assert_eq!(all[1].keepalives.idle, Some(Duration::from_secs(30)));
        let one_port = ConnInfo::parse("host=a,b,c port=7").expect("parses").resolve_all_with(&no_env, None);
        assert!(one_port.expect("resolves").iter().all(|t| t.port == 7));
        let e = ConnInfo::parse("host=a,b port=1,2,3").expect("parses").resolve_all_with(&no_env, None);
        assert!(e.expect_err("3 ports, 2 hosts").to_string().contains("could not match 3 port numbers to 2 hosts"));
        assert!(ConnInfo::parse("keepalives_idle=soon").is_err());
    }

    #[test]
    fn environment_fills_the_gaps() {
        let env = |k: &str| match k {
            "PGHOST" => Some("10.0.0.1".to_owned()),
            "PGPORT" => Some("6000".to_owned()),
            "PGPASSWORD" => Some("envpw".to_owned()),
            "PGUSER" => Some("envuser".to_owned()),
            _ => None,
        };
        let t = ConnInfo::parse("port=7000").expect("parses").resolve_with(&env, None).expect("resolves");
        assert_eq!((t.host.as_str(), t.port, t.user.as_str()), ("10.0.0.1", 7000, "envuser"));
        assert_eq!(t.password.as_deref(), Some("envpw"));
    }

    #[test]
    fn password_file_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(".pgpass");
        fs::write(&file, "# comment\nother:*:*:*:no\nlocalhost:5432:replication:rep:pw\\:1\n*:*:*:*:fallback\n")
            .expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
        let info = ConnInfo::parse("user=rep").expect("parses");
        let t = info.resolve_with(&no_env, Some(dir.path())).expect("resolves");
        assert_eq!(t.password.as_deref(), Some("pw:1"));
        let t = ConnInfo::parse("user=x host=h").expect("parses").resolve_with(&no_env, Some(dir.path()));
        assert_eq!(t.expect("resolves").password.as_deref(), Some("fallback"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let t = info.resolve_with(&no_env, Some(dir.path())).expect("resolves");
        assert_eq!(t.password, None, "a world-readable password file is ignored");
    }
}
