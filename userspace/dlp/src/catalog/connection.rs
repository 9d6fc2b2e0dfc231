//! Generic shapes: URLs and connection strings with passwords, credential files
//! (`.netrc`, kubeconfig), HTTP basic auth, JWTs, and the gated generic assignment.

use super::{Check, Detector, tok};
use crate::detectors::Family;
use crate::detectors::Kind;
use crate::detectors::Severity::{Critical, High, Medium};

/// `scheme://user:password@host` for the schemes in `schemes` (a regex alternation).
fn url(id: &str, title: &str, keywords: &[&str], schemes: &str) -> Detector {
    tok(
        id,
        title,
        Critical,
        keywords,
        &format!(
            r"(?i:{schemes})://[A-Za-z0-9._~%!$&'*+,;=-]{{1,64}}:(?P<s>[^\s:/?#@\x22'<>\\]{{1,128}})@[A-Za-z0-9.-]{{1,253}}"
        ),
        Check::Password,
    )
}

pub(super) fn detectors() -> Vec<Detector> {
    let mut generic = tok(
        "generic-secret-assignment",
        "Secret assigned to a secret-looking name",
        Medium,
        &[
            "key",
            "secret",
            "token",
            "passw",
            "pwd",
            "credential",
            "auth",
        ],
        concat!(
            r#"(?P<n>(?i:key|secret|token|passw|pwd|credential|auth)[A-Za-z0-9_.-]{0,24})"#,
            r#"["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?(?P<s>[A-Za-z0-9+/=_.~-]{16,256})"#
        ),
        Check::Generic,
    );
    generic.family = Family::Generic;
    generic.kind = Kind::Context;
    let mut jwt = tok(
        "jwt",
        "JSON Web Token",
        High,
        &["eyJ"],
        r"\b(?P<s>eyJ[A-Za-z0-9_-]{8,1500}\.eyJ[A-Za-z0-9_-]{4,1500}\.[A-Za-z0-9_-]{16,900})",
        Check::Jwt,
    );
    jwt.family = Family::Connection;
    vec![
        url(
            "postgres-connection-string",
            "PostgreSQL URL with password",
            &["postgres://", "postgresql://"],
            "postgres|postgresql",
        ),
        url(
            "mysql-connection-string",
            "MySQL / MariaDB URL with password",
            &["mysql://", "mariadb://", "mysql+pymysql://", "mysqlx://"],
            r"mysql|mariadb|mysql\+pymysql|mysqlx",
        ),
        url(
            "mongodb-connection-string",
            "MongoDB URL with password",
            &["mongodb://", "mongodb+srv://"],
            r"mongodb|mongodb\+srv",
        ),
        url(
            "redis-connection-string",
            "Redis URL with password",
            &["redis://", "rediss://"],
            "redis|rediss",
        ),
        url(
            "amqp-connection-string",
            "AMQP (RabbitMQ) URL with password",
            &["amqp://", "amqps://"],
            "amqp|amqps",
        ),
        url(
            "url-with-password",
            "URL with embedded password",
            &[
                "http://", "https://", "ftp://", "ftps://", "sftp://", "ssh://", "smtp://",
                "smtps://", "imap://", "imaps://", "ldap://", "ldaps://", "git://", "ws://",
                "wss://", "svn://",
            ],
            "https?|ftps?|sftp|ssh|smtps?|imaps?|ldaps?|git|wss?|svn",
        ),
        url(
            "jdbc-connection-string",
            "JDBC/SQLAlchemy URL with password",
            &[
                "jdbc:",
                "+psycopg2://",
                "+asyncpg://",
                "clickhouse://",
                "cockroachdb://",
                "mssql://",
                "sqlserver://",
                "oracle://",
            ],
            r"jdbc:[a-z0-9]{2,20}|postgresql\+psycopg2|postgresql\+asyncpg|clickhouse|cockroachdb|mssql|sqlserver|oracle",
        ),
        tok(
            "jdbc-password-parameter",
            "Connection string password parameter",
            Critical,
            &["password=", "pwd="],
            r#"(?i:password|pwd)=(?P<s>[^;&\s"'<>]{4,128})"#,
            Check::Password,
        )
        .context_only(),
        tok(
            "netrc-credentials",
            ".netrc machine credentials",
            Critical,
            &["machine "],
            r"\bmachine\s{1,4}[A-Za-z0-9.-]{1,253}\s{1,8}login\s{1,4}\S{1,128}\s{1,8}password\s{1,4}(?P<s>\S{3,256})",
            Check::Password,
        ),
        tok(
            "kubeconfig-client-key",
            "kubeconfig client key data",
            Critical,
            &["client-key-data:"],
            r"client-key-data:\s{0,4}(?P<s>[A-Za-z0-9+/]{100,4000}={0,2})",
            Check::Base64 { min_bytes: 64 },
        ),
        tok(
            "kubeconfig-user-token",
            "kubeconfig user token",
            Critical,
            &["user:"],
            r"\buser:\s{1,20}(?:(?:client-certificate-data|username):[^\n]{0,200}\n\s{1,20})?token:\s{0,4}(?P<s>[A-Za-z0-9._~+/=-]{20,2000})",
            Check::Entropy {
                min_len: 20,
                min_bits: 3.5,
            },
        ),
        tok(
            "http-basic-auth",
            "HTTP Basic authorization header",
            High,
            &["authorization"],
            r"(?i:authorization)\s{0,4}[:=]\s{0,4}[\x22']?(?i:basic)\s{1,4}(?P<s>[A-Za-z0-9+/]{8,512}={0,2})",
            Check::BasicAuth,
        ),
        tok(
            "ado-net-connection-string",
            "ADO.NET / ODBC connection string with password",
            Critical,
            &["server=", "data source="],
            r"(?i:server|data source)=[^;\n]{1,100};(?:[^;\n\x22']{1,100};){0,8}?(?i:password|pwd)=(?P<s>[^;\n\x22']{4,128})",
            Check::Password,
        ),
        jwt,
        generic,
    ]
}

impl Detector {
    /// For a detector whose value is only a secret because of the name it follows.
    fn context_only(mut self) -> Detector {
        self.kind = Kind::Context;
        self
    }
}
