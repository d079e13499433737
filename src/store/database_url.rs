//! What the store does with `DATABASE_URL` before connecting.
//!
//! A PostgreSQL URL without `sslmode` means `prefer` to the driver: TLS
//! whenever the server offers it, as Debian's packaged PostgreSQL does out of
//! the box. To a server on the same host (a loopback address) that buys
//! nothing — the bytes never leave the machine, `prefer` verifies no
//! certificate, and whoever can read loopback traffic can read the server's
//! memory — and it costs: 14–27 % of the machine's CPU at a fixed checkout
//! rate here (`docs/BENCHMARKS.md` §5). So a loopback URL without `sslmode`
//! connects without TLS; any `sslmode` given is kept as it is.

use std::borrow::Cow;
use std::net::IpAddr;

/// The URL to connect with: `url` with `sslmode=disable` added (an owned URL)
/// when it names a PostgreSQL server on a loopback address and says nothing about TLS.
pub fn connection_url(url: &str) -> Cow<'_, str> {
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
    // A `host` option (a socket directory, or a host overriding the URL's) is left to the driver.
    let chosen = parsed.query_pairs().any(|(k, _)| k == "sslmode" || k == "host");
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
            connection_url("postgres://postgres@127.0.0.1:5432/shop"),
            "postgres://postgres@127.0.0.1:5432/shop?sslmode=disable"
        );
        assert_eq!(connection_url("postgresql://u:p@localhost/shop"), "postgresql://u:p@localhost/shop?sslmode=disable");
        assert_eq!(connection_url("postgres://u@[::1]:5433/shop"), "postgres://u@[::1]:5433/shop?sslmode=disable");
        assert_eq!(connection_url("postgres://u@127.0.0.2/shop"), "postgres://u@127.0.0.2/shop?sslmode=disable");
        assert_eq!(
            connection_url("postgres://u@LOCALHOST/shop?application_name=mercato"),
            "postgres://u@LOCALHOST/shop?application_name=mercato&sslmode=disable"
        );
    }

    #[test]
    fn a_remote_server_a_chosen_sslmode_and_other_databases_are_left_alone() {
        for url in [
            "postgres://u@db.internal:5432/shop",
            "postgres://u@10.0.0.5/shop",
            "postgres://u@127.0.0.1/shop?sslmode=require",
            "postgres://u@localhost/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres:///shop?host=/var/run/postgresql",
            "postgres://u@localhost/shop?host=db.internal",
            "sqlite://data/mercato.db?mode=rwc",
            "sqlite::memory:",
            "not a url",
        ] {
            assert!(matches!(connection_url(url), Cow::Borrowed(u) if u == url), "{url}");
        }
    }

    #[test]
    fn the_password_survives_unchanged() {
        let url = "postgres://shop:p%40ss%2Fw0rd@127.0.0.1/shop";
        let changed = connection_url(url);
        let parsed = url::Url::parse(&changed).unwrap();
        assert_eq!(parsed.password(), Some("p%40ss%2Fw0rd"));
        assert_eq!(parsed.username(), "shop");
    }
}
