//! The libpq connection options beyond host, user and TLS mode, each with libpq's values and
//! error texts: `target_session_attrs`, `channel_binding`, TCP keepalives and
//! `tcp_user_timeout`, `ssl_min_protocol_version` / `ssl_max_protocol_version`, and
//! `gssencmode` (this client has no GSSAPI, as a libpq built without it: `require` is
//! refused with libpq's message). Every keyword [`super::ConnInfo`] accepts is honoured or
//! refused; none is accepted and then ignored.

use std::time::Duration;

use super::PgError;

/// `target_session_attrs`: which of the listed hosts is acceptable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionAttrs {
    /// `any` (default): the first host that accepts the login.
    #[default]
    Any,
    /// `read-write`: a session that accepts writes.
    ReadWrite,
    /// `read-only`: a session that does not.
    ReadOnly,
    /// `primary`: a server not in hot standby.
    Primary,
    /// `standby`: a server in hot standby.
    Standby,
    /// `prefer-standby`: a standby if one is listed and up, else any.
    PreferStandby,
}

impl SessionAttrs {
    /// Parses a value as libpq does.
    pub fn parse(value: &str) -> Result<Self, PgError> {
        Ok(match value {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            other => return Err(PgError::ConnInfo(format!("invalid target_session_attrs value: \"{other}\""))),
        })
    }

    /// Why a session with these properties is not acceptable (libpq's words), or `None`.
    /// `prefer-standby` accepts only standbys here: the caller's second pass takes any.
    pub fn reject(self, read_only: bool, in_hot_standby: bool) -> Option<&'static str> {
        match self {
            Self::ReadWrite if read_only => Some("session is read-only"),
            Self::ReadOnly if !read_only => Some("session is not read-only"),
            Self::Primary if in_hot_standby => Some("server is in hot standby mode"),
            Self::Standby | Self::PreferStandby if !in_hot_standby => Some("server is not in hot standby mode"),
            _ => None,
        }
    }

    /// Whether checking needs `transaction_read_only` (else hot standby state).
    pub fn asks_read_only(self) -> bool {
        matches!(self, Self::ReadWrite | Self::ReadOnly)
    }
}

/// `channel_binding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelBindingMode {
    /// `disable`: never bind.
    Disable,
    /// `prefer` (default): bind when TLS is in use and the server offers SCRAM-SHA-256-PLUS.
    #[default]
    Prefer,
    /// `require`: fail unless the authentication was channel-bound.
    Require,
}

impl ChannelBindingMode {
    /// Parses a value as libpq does.
    pub fn parse(value: &str) -> Result<Self, PgError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            other => return Err(PgError::ConnInfo(format!("invalid channel_binding value: \"{other}\""))),
        })
    }
}

/// TCP keepalive settings (`keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `keepalives_count`); unset values keep the system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalives {
    /// `keepalives` (default on).
    pub enabled: bool,
    /// `keepalives_idle`, seconds.
    pub idle: Option<Duration>,
    /// `keepalives_interval`, seconds.
    pub interval: Option<Duration>,
    /// `keepalives_count`.
    pub count: Option<u32>,
}

impl Default for Keepalives {
    fn default() -> Self {
        Self { enabled: true, idle: None, interval: None, count: None }
    }
}

/// An integer option (`keepalives_idle=30`...), with libpq's message when it is not one.
pub fn parse_int(key: &str, value: &str) -> Result<u32, PgError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| PgError::ConnInfo(format!("invalid integer value \"{value}\" for connection option \"{key}\"")))
}

/// A TLS protocol version as `ssl_min_protocol_version` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1`.
    V1_0,
    /// `TLSv1.1`.
    V1_1,
    /// `TLSv1.2` (libpq's default minimum).
    V1_2,
    /// `TLSv1.3`.
    V1_3,
}

impl TlsVersion {
    /// Parses `value` for option `key` (empty: `None`, no bound).
    pub fn parse(key: &str, value: &str) -> Result<Option<Self>, PgError> {
        Ok(Some(match value {
            "" => return Ok(None),
            "TLSv1" => Self::V1_0,
            "TLSv1.1" => Self::V1_1,
            "TLSv1.2" => Self::V1_2,
            "TLSv1.3" => Self::V1_3,
            other => return Err(PgError::ConnInfo(format!("invalid {key} value: \"{other}\""))),
        }))
    }
}

/// `ssl_min_protocol_version` / `ssl_max_protocol_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsVersions {
    /// The minimum (libpq's default TLSv1.2).
    pub min: TlsVersion,
    /// The maximum, if bounded.
    pub max: Option<TlsVersion>,
}

impl Default for TlsVersions {
    fn default() -> Self {
        Self { min: TlsVersion::V1_2, max: None }
    }
}

impl TlsVersions {
    /// Both bounds, checked as libpq checks them.
    pub fn new(min: Option<TlsVersion>, max: Option<TlsVersion>) -> Result<Self, PgError> {
        let versions = Self { min: min.unwrap_or(TlsVersion::V1_2), max };
        if max.is_some_and(|m| m < versions.min) {
            return Err(PgError::ConnInfo("invalid SSL protocol version range".into()));
        }
        Ok(versions)
    }

    /// Whether TLS 1.2 / 1.3 (the versions this client speaks) are allowed.
    pub fn allows(&self, version: TlsVersion) -> bool {
        version >= self.min && self.max.is_none_or(|m| version <= m)
    }
}

/// Checks `gssencmode`: `disable` and `prefer` mean plaintext or TLS here (no GSSAPI);
/// `require` is refused with the message of a libpq built without GSSAPI.
pub fn check_gssencmode(value: &str) -> Result<(), PgError> {
    match value {
        "" | "disable" | "prefer" => Ok(()),
        "require" => {
            Err(PgError::ConnInfo("gssencmode value \"require\" invalid when GSSAPI support is not compiled in".into()))
        }
        other => Err(PgError::ConnInfo(format!("invalid gssencmode value: \"{other}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_attrs_decide_as_libpq() {
        assert_eq!(SessionAttrs::parse("read-write").expect("valid").reject(true, false), Some("session is read-only"));
        assert_eq!(SessionAttrs::ReadWrite.reject(false, false), None);
        assert_eq!(SessionAttrs::Primary.reject(true, true), Some("server is in hot standby mode"));
        assert_eq!(SessionAttrs::Standby.reject(false, false), Some("server is not in hot standby mode"));
        assert!(SessionAttrs::parse("whatever").is_err());
    }

    #[test]
    fn tls_versions_and_gss() {
        let v = TlsVersions::new(TlsVersion::parse("m", "TLSv1.3").expect("valid"), None).expect("range");
        assert!(!v.allows(TlsVersion::V1_2) && v.allows(TlsVersion::V1_3));
        assert!(TlsVersions::new(Some(TlsVersion::V1_3), Some(TlsVersion::V1_2)).is_err());
        assert!(TlsVersion::parse("ssl_min_protocol_version", "SSLv3").is_err());
        assert!(check_gssencmode("prefer").is_ok());
        let e = check_gssencmode("require").expect_err("no GSSAPI");
        assert!(e.to_string().contains("GSSAPI support is not compiled in"), "{e}");
    }
}
