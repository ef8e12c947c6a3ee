//! Opening a connection as libpq does: each listed host in turn (`host=a,b`), TCP with
//! keepalives and `tcp_user_timeout` or a Unix socket with `requirepeer`, TLS per `sslmode`,
//! the startup packet (`options`, `client_encoding`, `application_name`), authentication
//! (trust, cleartext, md5, SCRAM-SHA-256, and SCRAM-SHA-256-PLUS channel binding per
//! `channel_binding`), then `target_session_attrs`: a host whose session does not qualify is
//! left for the next (with `prefer-standby`, a second pass takes any host).

use std::collections::HashMap;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::net::{TcpStream, UnixStream};

use super::conn::{log_notice, server_error, ReplicationConnection, Transport};
use super::connopts::{ChannelBindingMode, SessionAttrs};
use super::{ConnInfo, ConnTarget, PgError};

/// The receive buffer's initial capacity.
const READ_CHUNK: usize = 256 * 1024;

impl ReplicationConnection {
    /// Connects and authenticates as a physical walsender client (TLS as `sslmode` says).
    pub async fn connect(info: &ConnInfo) -> Result<ReplicationConnection, PgError> {
        connect(info, true).await
    }

    /// Connects and authenticates an ordinary SQL session to the connection string's
    /// database (no `replication` parameter): for the catalogue queries a replication
    /// connection refuses (`pg_tablespace`, `pg_switch_wal()`...). [`Self::simple_query`]
    /// runs SQL on it.
    pub async fn connect_database(info: &ConnInfo) -> Result<ReplicationConnection, PgError> {
        connect(info, false).await
    }
}

/// Connects to the first listed host that accepts the login and whose session qualifies.
async fn connect(info: &ConnInfo, replication: bool) -> Result<ReplicationConnection, PgError> {
    let targets = info.resolve()?;
    let attrs = targets[0].target_session_attrs;
    let passes: &[SessionAttrs] =
        if attrs == SessionAttrs::PreferStandby { &[SessionAttrs::PreferStandby, SessionAttrs::Any] } else { &[attrs] };
    let mut last = None;
    for &pass in passes {
        for target in &targets {
            match connect_one(target, replication, pass).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.expect("at least one target"))
}

async fn connect_one(
    target: &ConnTarget,
    replication: bool,
    attrs: SessionAttrs,
) -> Result<ReplicationConnection, PgError> {
    let (io, tls) = open_socket(target).await?;
    let mut conn = ReplicationConnection {
        io,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::new(),
        params: HashMap::new(),
        backend_pid: 0,
    };
    startup(&mut conn, target, replication, tls.as_ref()).await?;
    if let Some(why) = disqualified(&mut conn, attrs, replication).await? {
        conn.close().await;
        return Err(PgError::SessionAttrs { target: target.describe(), message: why.into() });
    }
    Ok(conn)
}

/// TLS is in use; with the server certificate's `tls-server-end-point` hash when its
/// signature hash is known.
struct TlsInUse {
    end_point: Option<Vec<u8>>,
}

/// The socket, and whether (and how) TLS is in use.
async fn open_socket(target: &ConnTarget) -> Result<(Box<dyn Transport>, Option<TlsInUse>), PgError> {
    if target.is_unix_socket() {
        let unix = with_timeout(target, UnixStream::connect(target.describe())).await?;
        if let Some(wanted) = &target.requirepeer {
            check_peer(&unix, wanted)?;
        }
        return Ok((Box::new(unix), None));
    }
    let address = target.hostaddr.clone().unwrap_or_else(|| target.host.clone());
    let tcp = with_timeout(target, async {
        let tcp = TcpStream::connect((address.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        apply_tcp_options(&tcp, target)?;
        Ok(tcp)
    })
    .await?;
    Ok(match super::tls::negotiate(tcp, target).await? {
        super::tls::Negotiated::Tls(stream) => {
            let end_point = super::tls::server_end_point(&stream);
            (Box::new(stream), Some(TlsInUse { end_point }))
        }
        super::tls::Negotiated::Plain(tcp) => (Box::new(tcp), None),
    })
}

fn apply_tcp_options(tcp: &TcpStream, target: &ConnTarget) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(tcp);
    let k = target.keepalives;
    sock.set_keepalive(k.enabled)?;
    if k.enabled && (k.idle.is_some() || k.interval.is_some() || k.count.is_some()) {
        let mut params = socket2::TcpKeepalive::new();
        if let Some(idle) = k.idle {
            params = params.with_time(idle);
        }
        if let Some(interval) = k.interval {
            params = params.with_interval(interval);
        }
        if let Some(count) = k.count {
            params = params.with_retries(count);
        }
        sock.set_tcp_keepalive(&params)?;
    }
    if let Some(timeout) = target.tcp_user_timeout {
        sock.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(())
}

/// `requirepeer`: the server process must run as `wanted` (libpq's message otherwise).
fn check_peer(unix: &UnixStream, wanted: &str) -> Result<(), PgError> {
    let uid = unix.peer_cred()?.uid();
    let actual = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    if actual == wanted {
        Ok(())
    } else {
        Err(PgError::Auth(format!("requirepeer specifies \"{wanted}\", but actual peer user name is \"{actual}\"")))
    }
}

async fn with_timeout<T>(
    target: &ConnTarget,
    connect: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, PgError> {
    let result = match target.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout expired"))),
        None => connect.await,
    };
    result.map_err(|source| PgError::Connect { target: target.describe(), source })
}

async fn startup(
    conn: &mut ReplicationConnection,
    target: &ConnTarget,
    replication: bool,
    tls: Option<&TlsInUse>,
) -> Result<(), PgError> {
    let mut params = if replication {
        vec![("user", target.user.as_str()), ("database", "replication"), ("replication", "true")]
    } else {
        vec![("user", target.user.as_str()), ("database", target.dbname.as_str())]
    };
    if let Some(name) = &target.application_name {
        params.push(("application_name", name.as_str()));
    }
    if let Some(options) = &target.options {
        params.push(("options", options.as_str()));
    }
    if let Some(encoding) = &target.client_encoding {
        params.push(("client_encoding", encoding.as_str()));
    }
    frontend::startup_message(params, &mut conn.wbuf)?;
    conn.flush().await?;
    authenticate(conn, target, tls).await?;
    loop {
        match conn.read_message().await? {
            Message::ParameterStatus(body) => {
                conn.params.insert(body.name()?.to_owned(), body.value()?.to_owned());
            }
            Message::BackendKeyData(body) => conn.backend_pid = body.process_id(),
            Message::ReadyForQuery(_) => return Ok(()),
            Message::ErrorResponse(body) => return Err(PgError::Server(Box::new(server_error(body.fields())))),
            Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
            _ => return Err(PgError::protocol("unexpected message during startup")),
        }
    }
}

/// Picks the SASL mechanism and channel binding as libpq does for `channel_binding`.
fn scram_client(
    target: &ConnTarget,
    mechanisms: &[String],
    tls_in_use: Option<&TlsInUse>,
    password: &[u8],
) -> Result<(&'static str, ScramSha256, bool), PgError> {
    let tls = tls_in_use.is_some();
    let end_point = tls_in_use.and_then(|t| t.end_point.as_deref());
    let plus = mechanisms.iter().any(|m| m == SCRAM_SHA_256_PLUS);
    let plain = mechanisms.iter().any(|m| m == SCRAM_SHA_256);
    let mode = target.channel_binding;
    if mode != ChannelBindingMode::Disable && tls && plus {
        if let Some(hash) = end_point {
            let binding = ChannelBinding::tls_server_end_point(hash.to_vec());
            return Ok((SCRAM_SHA_256_PLUS, ScramSha256::new(password, binding), true));
        }
        if mode == ChannelBindingMode::Require {
            return Err(PgError::Auth(
                "channel binding is required, but the server certificate's signature algorithm has no tls-server-end-point hash".into(),
            ));
        }
    }
    if mode == ChannelBindingMode::Require {
        return Err(PgError::Auth(if tls {
            "channel binding is required, but server did not offer an authentication method that supports channel binding".into()
        } else {
            "channel binding required, but SSL not in use".into()
        }));
    }
    if !plain {
        return Err(PgError::Auth(format!("no supported SASL mechanism in {mechanisms:?}")));
    }
    // 'y' tells a server that offered no -PLUS that we could have bound; 'n' otherwise.
    let binding = if tls && !plus && mode == ChannelBindingMode::Prefer {
        ChannelBinding::unrequested()
    } else {
        ChannelBinding::unsupported()
    };
    Ok((SCRAM_SHA_256, ScramSha256::new(password, binding), false))
}

async fn authenticate(
    conn: &mut ReplicationConnection,
    target: &ConnTarget,
    tls: Option<&TlsInUse>,
) -> Result<(), PgError> {
    let password = || target.password.clone().ok_or_else(|| PgError::Auth("fe_sendauth: no password supplied".into()));
    let mut scram: Option<ScramSha256> = None;
    let mut bound = false;
    loop {
        match conn.read_message().await? {
            Message::AuthenticationOk => {
                if target.channel_binding == ChannelBindingMode::Require && !bound {
                    return Err(PgError::Auth(
                        "channel binding required, but server authenticated client without channel binding".into(),
                    ));
                }
                return Ok(());
            }
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.as_bytes(), &mut conn.wbuf)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(target.user.as_bytes(), password()?.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut conn.wbuf)?;
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body.mechanisms().map(|m| Ok(m.to_owned())).collect()?;
                let (mechanism, client, plus) = scram_client(target, &mechanisms, tls, password()?.as_bytes())?;
                frontend::sasl_initial_response(mechanism, client.message(), &mut conn.wbuf)?;
                scram = Some(client);
                bound = plus;
            }
            Message::AuthenticationSaslContinue(body) => {
                let client = scram.as_mut().ok_or_else(|| PgError::protocol("SASLContinue before SASL"))?;
                client.update(body.data()).map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
                frontend::sasl_response(client.message(), &mut conn.wbuf)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let client = scram.as_mut().ok_or_else(|| PgError::protocol("SASLFinal before SASL"))?;
                client.finish(body.data()).map_err(|e| PgError::Auth(format!("SCRAM server signature: {e}")))?;
                continue;
            }
            Message::ErrorResponse(body) => return Err(PgError::Server(Box::new(server_error(body.fields())))),
            _ => {
                return Err(PgError::Auth(
                    "authentication method not supported (only trust, password, md5 and SCRAM-SHA-256)".into(),
                ))
            }
        }
        conn.flush().await?;
    }
}

/// Why the session does not satisfy `attrs`, as libpq decides: from the `in_hot_standby` and
/// `default_transaction_read_only` the server reports at startup (PostgreSQL 14+), else by
/// asking (`SHOW transaction_read_only`, which a walsender answers too; on a SQL session
/// `pg_is_in_recovery()` for the standby state).
async fn disqualified(
    conn: &mut ReplicationConnection,
    attrs: SessionAttrs,
    replication: bool,
) -> Result<Option<&'static str>, PgError> {
    if attrs == SessionAttrs::Any {
        return Ok(None);
    }
    // Read before any await: a borrow of the connection held across one makes the future
    // non-Send (the transport is not Sync).
    let (standby, default_ro) = {
        let reported = |name: &str| conn.parameter(name).map(|v| v == "on");
        (reported("in_hot_standby"), reported("default_transaction_read_only"))
    };
    let in_hot_standby = match standby {
        Some(s) => s,
        None if attrs.asks_read_only() => false,
        None if replication => show_on(conn, "transaction_read_only").await?,
        None => {
            let rows = conn.simple_query("SELECT pg_catalog.pg_is_in_recovery()").await?;
            rows.first().and_then(|r| r.first().cloned().flatten()).is_some_and(|v| v == "t")
        }
    };
    let read_only = match (standby, default_ro) {
        (Some(s), Some(d)) => s || d,
        _ if attrs.asks_read_only() => show_on(conn, "transaction_read_only").await?,
        _ => in_hot_standby,
    };
    Ok(attrs.reject(read_only, in_hot_standby))
}

async fn show_on(conn: &mut ReplicationConnection, name: &str) -> Result<bool, PgError> {
    Ok(conn.show(name).await? == "on")
}
