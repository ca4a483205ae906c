//! The TOML as serde reads it: TOML types only (strings, integers, booleans, tables, arrays).
//!
//! Required fields are `Option`s and integers are `i64`, so that a missing field or an
//! out-of-range number is reported by validation together with every other problem, instead of
//! stopping serde at the first one. Unknown keys are refused everywhere.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawConfig {
    pub system: Option<RawSystem>,
    #[serde(default)]
    pub interfaces: Vec<RawInterface>,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub aliases: Vec<RawAlias>,
    #[serde(default)]
    pub virtual_ips: Vec<RawVip>,
    #[serde(default)]
    pub nat: RawNat,
    #[serde(default)]
    pub filter: RawFilter,
    pub ha: Option<RawHa>,
    #[serde(default)]
    pub dhcp: Vec<RawDhcp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawDhcp {
    pub interface: Option<String>,
    pub enabled: Option<bool>,
    pub range: Option<String>,
    pub ranges: Option<Vec<String>>,
    pub gateway: Option<String>,
    pub dns: Option<Vec<String>>,
    pub domain: Option<String>,
    pub lease_time: Option<i64>,
    #[serde(default, rename = "static")]
    pub statics: Vec<RawDhcpStatic>,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
    pub verify_chaddr: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { mac = \"02:00:00:00:00:01\", ip = \"192.168.0.20\", hostname = \"printer\" }"
)]
pub(crate) struct RawDhcpStatic {
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawSystem {
    pub hostname: Option<String>,
    pub host_id: Option<i64>,
    pub workers: Option<i64>,
    pub ring_size: Option<i64>,
    pub state_limit: Option<i64>,
    pub src_node_limit: Option<i64>,
    pub adaptive_start: Option<i64>,
    pub adaptive_end: Option<i64>,
    pub kill_states_on_reload: Option<bool>,
    pub allow_ip_options: Option<bool>,
    pub metrics: Option<RawMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawInterface {
    pub name: Option<String>,
    pub device: Option<String>,
    pub address: Option<String>,
    pub role: Option<String>,
    #[serde(default)]
    pub description: String,
    pub mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRoutes {
    pub default_gateway: Option<String>,
    #[serde(default, rename = "static")]
    pub static_routes: Vec<RawStaticRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawStaticRoute {
    pub network: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAlias {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub entries: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawVip {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub interface: Option<String>,
    pub address: Option<String>,
    pub vhid: Option<i64>,
    pub password: Option<String>,
    pub advbase: Option<i64>,
    pub advskew: Option<i64>,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawNat {
    pub outbound: Option<RawOutbound>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawOutbound {
    pub mode: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawNatRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawNatRule {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub no_nat: bool,
    pub interface: Option<String>,
    pub protocol: Option<String>,
    pub source: Option<RawEndpoint>,
    pub destination: Option<RawEndpoint>,
    pub translation: Option<RawTranslation>,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { address = \"interface address\", port = \"1024-65535\", static_port = false }"
)]
pub(crate) struct RawTranslation {
    pub address: Option<String>,
    pub port: Option<RawPort>,
    #[serde(default)]
    pub static_port: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { address = \"lan net\", invert = false, port = 443 }"
)]
pub(crate) struct RawEndpoint {
    pub address: Option<String>,
    #[serde(default)]
    pub invert: bool,
    pub port: Option<RawPort>,
}

/// A port written as an integer (`443`) or a string (`"443"`, `"1024-65535"`).
#[derive(Debug)]
pub(crate) enum RawPort {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (443) or a port range (\"1024-65535\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Str(v.to_owned()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawFilter {
    #[serde(default)]
    pub rules: Vec<RawFilterRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawFilterRule {
    pub interface: Option<String>,
    pub action: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub ip_version: Option<String>,
    pub protocol: Option<String>,
    pub source: Option<RawEndpoint>,
    pub destination: Option<RawEndpoint>,
    #[serde(default)]
    pub log: bool,
    pub max_src_states: Option<i64>,
    pub max_src_conn_rate: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "nosync")]
    pub no_sync: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHa {
    pub state_sync: Option<RawStateSync>,
    pub config_sync: Option<RawConfigSync>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawStateSync {
    pub enabled: Option<bool>,
    pub interface: Option<String>,
    pub peer: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawConfigSync {
    pub sync_to: Option<String>,
    pub port: Option<i64>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sections: Option<Vec<String>>,
}
