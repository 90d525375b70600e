//! Which core we talk to. Xray and V2Ray 4.34 share message layouts but not
//! protobuf package names, which show up in service paths and in every
//! `TypedMessage.type`.

use std::fmt;
use std::str::FromStr;

/// The proxy core's dialect of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flavor {
    /// Xray-core (package prefix `xray.`).
    #[default]
    Xray,
    /// V2Ray 4.34, e.g. Debian's `v2ray` (package prefix `v2ray.core.`).
    V2ray,
}

impl Flavor {
    /// The protobuf package prefix, with its trailing dot.
    pub fn package_prefix(self) -> &'static str {
        match self {
            Flavor::Xray => "xray.",
            Flavor::V2ray => "v2ray.core.",
        }
    }

    /// Full protobuf name of a message, e.g. `proxy.vless.Account` →
    /// `xray.proxy.vless.Account` / `v2ray.core.proxy.vless.Account`.
    pub fn type_name(self, relative: &str) -> String {
        format!("{}{relative}", self.package_prefix())
    }

    /// The gRPC path of a method, e.g. (`app.proxyman.command.HandlerService`,
    /// `AlterInbound`) → `/xray.app.proxyman.command.HandlerService/AlterInbound`.
    pub fn method_path(self, service: &str, method: &str) -> String {
        format!("/{}{service}/{method}", self.package_prefix())
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Xray => "xray",
            Flavor::V2ray => "v2ray",
        })
    }
}

/// The text was neither `xray` nor `v2ray`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown core flavor {0:?} (expected \"xray\" or \"v2ray\")")]
pub struct ParseFlavorError(String);

impl FromStr for Flavor {
    type Err = ParseFlavorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "xray" => Ok(Flavor::Xray),
            "v2ray" => Ok(Flavor::V2ray),
            _ => Err(ParseFlavorError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_xray() {
        assert_eq!(Flavor::default(), Flavor::Xray);
    }

    #[test]
    fn parses_and_displays_both_names() {
        for flavor in [Flavor::Xray, Flavor::V2ray] {
            assert_eq!(flavor.to_string().parse::<Flavor>(), Ok(flavor));
        }
        assert_eq!("V2Ray".parse::<Flavor>(), Ok(Flavor::V2ray));
        assert!("sing-box".parse::<Flavor>().is_err());
    }

    #[test]
    fn type_names_carry_the_flavor_prefix() {
        assert_eq!(
            Flavor::Xray.type_name("proxy.vless.Account"),
            "xray.proxy.vless.Account"
        );
        assert_eq!(
            Flavor::V2ray.type_name("proxy.vless.Account"),
            "v2ray.core.proxy.vless.Account"
        );
        assert_eq!(
            Flavor::V2ray.type_name("app.proxyman.command.AddUserOperation"),
            "v2ray.core.app.proxyman.command.AddUserOperation"
        );
    }

    #[test]
    fn method_paths_carry_the_flavor_prefix() {
        assert_eq!(
            Flavor::Xray.method_path("app.proxyman.command.HandlerService", "AlterInbound"),
            "/xray.app.proxyman.command.HandlerService/AlterInbound"
        );
        assert_eq!(
            Flavor::V2ray.method_path("app.stats.command.StatsService", "QueryStats"),
            "/v2ray.core.app.stats.command.StatsService/QueryStats"
        );
    }
}
