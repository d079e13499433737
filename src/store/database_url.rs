//! What the store does with `DATABASE_URL` before connecting.
//!
//! A PostgreSQL URL that says nothing about TLS means `prefer` to the driver:
//! TLS whenever the server offers it (as Debian's packaged PostgreSQL does out
//! of the box), without checking any certificate. To a server on this host that
//! buys nothing — the bytes stay on the machine, and whoever can read loopback
//! traffic can read the server's memory — and it costs: 14–27 % of the
//! machine's CPU at a fixed checkout rate here (`docs/BENCHMARKS.md` §5). So a
//! loopback URL that leaves TLS open connects without it. Anything that says
//! otherwise wins: a TLS option in the URL, `PGSSLMODE` and friends in the
//! environment, or a `host`/`hostaddr` option that points elsewhere. A loopback
//! port that forwards to another machine in plain text (socat, a plain port
//! forward) must ask for `sslmode=require` itself.

use std::borrow::Cow;
use std::net::IpAddr;

/// URL options (both of sqlx's spellings) that decide TLS or where to connect.
const CHOSEN: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "host",
    "hostaddr",
];

/// Environment variables the driver reads for TLS when the URL is silent.
pub const TLS_ENV: &[&str] = &["PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"];

/// The URL to connect with: `url` with `sslmode=disable` added (an owned URL)
/// when it names a PostgreSQL server on a loopback address and neither it nor
/// the environment (`tls_env_set`: one of [`TLS_ENV`] is set) chooses TLS.
pub fn connection_url(url: &str, tls_env_set: bool) -> Cow<'_, str> {
    let Ok(mut parsed) = url::Url::parse(url) else { return Cow::Borrowed(url) };
    let postgres = matches!(parsed.scheme(), "postgres" | "postgresql");
    let loopback = match parsed.host() {
        // `postgres:` is not a special scheme to the URL standard: its IPv4 hosts come as names.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    let chosen = tls_env_set || parsed.query_pairs().any(|(k, _)| CHOSEN.contains(&k.as_ref()));
    if !postgres || !loopback || chosen {
        return Cow::Borrowed(url);
    }
    parsed.query_pairs_mut().append_pair("sslmode", "disable");
    Cow::Owned(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_this_host_is_reached_without_tls() {
        assert_eq!(
            connection_url("postgres://postgres@127.0.0.1:5432/shop", false),
            "postgres://postgres@127.0.0.1:5432/shop?sslmode=disable"
        );
        assert_eq!(connection_url("postgresql://u:p@localhost/shop", false), "postgresql://u:p@localhost/shop?sslmode=disable");
        assert_eq!(connection_url("postgres://u@[::1]:5433/shop", false), "postgres://u@[::1]:5433/shop?sslmode=disable");
        assert_eq!(connection_url("postgres://u@127.0.0.2/shop", false), "postgres://u@127.0.0.2/shop?sslmode=disable");
        assert_eq!(
            connection_url("postgres://u@LOCALHOST/shop?application_name=mercato", false),
            "postgres://u@LOCALHOST/shop?application_name=mercato&sslmode=disable"
        );
    }

    #[test]
    fn a_remote_server_a_tls_choice_and_other_databases_are_left_alone() {
        for url in [
            "postgres://u@db.internal:5432/shop",
            "postgres://u@10.0.0.5/shop",
            "postgres://u@127.0.0.1/shop?sslmode=require",
            "postgres://u@127.0.0.1/shop?ssl-mode=require",
            "postgres://u@localhost/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u@localhost/shop?ssl-root-cert=/etc/ca.pem",
            "postgres://u@localhost/shop?sslcert=/etc/client.pem&sslkey=/etc/client.key",
            "postgres:///shop?host=/var/run/postgresql",
            "postgres://u@localhost/shop?host=db.internal",
            "postgres://u@localhost/shop?hostaddr=10.0.0.5",
            "sqlite://data/mercato.db?mode=rwc",
            "sqlite::memory:",
            "not a url",
        ] {
            assert!(matches!(connection_url(url, false), Cow::Borrowed(u) if u == url), "{url}");
        }
    }

    #[test]
    fn tls_chosen_in_the_environment_is_left_to_the_driver() {
        let url = "postgres://u@127.0.0.1/shop";
        assert!(matches!(connection_url(url, true), Cow::Borrowed(u) if u == url));
    }

    #[test]
    fn the_password_survives_unchanged() {
        let url = "postgres://shop:p%40ss%2Fw0rd@127.0.0.1/shop";
        let changed = connection_url(url, false);
        let parsed = url::Url::parse(&changed).unwrap();
        assert_eq!(parsed.password(), Some("p%40ss%2Fw0rd"));
        assert_eq!(parsed.username(), "shop");
    }
}
