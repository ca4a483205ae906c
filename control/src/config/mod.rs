//! tandem's configuration: one TOML file per box, read into a validated, typed [`Config`].
//!
//! The file says what the seed article configures on a pfSense box through its web pages:
//! interfaces, virtual IPs (CARP), outbound NAT, aliases, filter rules, and the HA settings of
//! state sync (pfsync) and config sync (XML-RPC). `scripts/lab-configs/fw-a.toml` and `fw-b.toml` are the
//! seed's two boxes; `fw-single.toml` is box A alone.
//!
//! [`load`] and [`parse`] report every problem at once, one per line, each as
//! `FILE: field.path: problem`, e.g. `fw-a.toml: virtual_ips[1].vhid: 0 is out of range
//! 1..=255`. A TOML syntax error is `FILE: line L, column C: problem`; a value of the wrong TOML
//! type or an unknown key is `FILE: field.path: problem (line L, column C)` and stops the reading
//! there (toml cannot go on past it).
//!
//! # The format
//!
//! A whole, valid file (a test parses it):
//!
//! Unknown keys are errors everywhere. Names (of interfaces and aliases) are a letter, then
//! letters, digits, `_` or `-`, at most 31 characters. Addresses are IPv4 (`a.b.c.d`);
//! `a.b.c.d/len` is an address with its prefix length. Fields marked *optional* may be left out;
//! the others are required.
//!
//! ```toml
//! [system]
//! hostname = "fwa"
//! host_id = 1            # 1..=4294967295, unique in the cluster: the creator id of synced states
//! workers = 1            # optional, dataplane worker threads, 1..=64 (default 1)
//! ring_size = 4096       # optional, entries of each AF_XDP ring (RX, TX, fill, completion) per
//!                        # socket, a power of two 64..=16384 (default 4096): larger absorbs
//!                        # longer bursts and queues longer under overload; UMEM is 8 KiB per
//!                        # entry per socket; changing it takes a restart
//! state_limit = 262144   # optional, state table capacity, 1..=16777216 (default 262144);
//!                         # the table is sized at start: raising it takes a restart
//! src_node_limit = 10000 # optional, sources tracked for max_src_* limits, 1..=16777216 (default
//!                        # 10000, pf's src-nodes): a new source beyond it is refused a state
//! adaptive_start = 157286  # optional, pf's adaptive.start and adaptive.end, in states, both or
//! adaptive_end = 314572    # neither: above start every timeout shrinks linearly, to zero at
//!                          # end; start < end, or both 0 (no scaling); default 60% and 120% of
//!                          # state_limit
//! kill_states_on_reload = false  # optional: on config apply, kill the states the new rules block
//! allow_ip_options = false  # optional, forward IPv4 with options (default false: dropped, as pf)
//!
//! [system.metrics]       # optional: the Prometheus endpoint (off without this table)
//! listen = "10.255.0.1:9120"   # ADDR:PORT serving /metrics; a sync or management address
//!
//! [[interfaces]]         # one per interface; names are what the rest of the file refers to
//! name = "wan"
//! device = "wan"         # the OS network device (its MTU is the interface's egress MTU)
//! address = "172.25.46.101/24"   # this box's address, with the network's prefix length
//! role = "wan"           # lan | wan | sync | other
//! description = "WAN"    # optional, free text (every section has one)
//! mac = "02:00:00:00:0a:01"      # optional, instead of the device's MAC
//! [[interfaces]]
//! name = "lan"
//! device = "lan"
//! address = "192.168.0.11/24"
//! role = "lan"
//! [[interfaces]]
//! name = "sync"
//! device = "sync"
//! address = "10.255.0.1/24"
//! role = "sync"
//!
//! [routes]
//! default_gateway = "172.25.46.1"   # optional; on a directly connected network
//! [[routes.static]]
//! network = "10.10.0.0/16"          # no host bits set
//! gateway = "192.168.0.254"         # on a directly connected network
//!
//! [[aliases]]
//! name = "cluster_pfSense"
//! type = "host"          # host: entries are addresses | network: entries are a.b.c.d/len
//! entries = ["10.255.0.1", "10.255.0.2"]
//! no_sync = false      # optional: config sync leaves this alias on its box (also on
//!                      # virtual_ips, routes.static, NAT and filter rules; `nosync` too)
//!
//! [[virtual_ips]]
//! type = "carp"          # carp | ipalias | proxyarp | other
//! interface = "wan"
//! address = "172.25.46.100/24"   # inside the interface's network; CARP: the interface's length
//! vhid = 1               # carp only: 1..=255
//! password = "a-carp-secret"  # carp only: at most 20 bytes; under 8 draws a warning
//! advbase = 1            # carp only, optional: seconds, 0..=255 (default 1)
//! advskew = 0            # carp only, optional: 0..=254 (default 0); lowest (advbase, advskew) is master
//!
//! [nat.outbound]
//! mode = "hybrid"        # automatic | hybrid | manual | disabled (default automatic)
//! [[nat.outbound.rules]] # hybrid and manual only; first match wins
//! interface = "wan"      # the interface traffic leaves by
//! protocol = "any"       # optional (default any), as for filter rules
//! source = { address = "192.168.0.0/24" }   # optional endpoints, as for filter rules
//! destination = { address = "any" }
//! translation = { address = "172.25.46.100" }  # optional: see below
//! disabled = false       # optional flags, default false: disabled, no_nat, no_sync
//!
//! [[filter.rules]]       # per interface, in file order, first match wins; no match is blocked
//! interface = "sync"     # the interface packets come in by
//! action = "pass"        # pass | block | reject
//! protocol = "tcp"       # optional: any | tcp | udp | tcp/udp | icmp | carp | pfsync (default any)
//! ip_version = "inet"    # optional: only inet for now
//! source = { address = "cluster_pfSense" }
//! destination = { address = "self", port = 8443 }
//! log = false            # optional flags, default false: disabled, log, no_sync
//!
//! [[filter.rules]]
//! interface = "lan"
//! action = "pass"
//! source = { address = "lan net" }
//! max_src_states = 1000  # optional, pass rules only: most states one source address may hold
//!                        # through this rule (pf's max-src-states), 1..=16777216
//! max_src_conn_rate = "100/10"  # optional, pass rules only: most new states per source and
//!                        # time, "CONNECTIONS/SECONDS" (pf's max-src-conn-rate), each 1..=1000000
//!
//! [ha.state_sync]        # pfsync
//! enabled = true         # optional (default true)
//! interface = "sync"     # an interface of role sync
//! peer = "10.255.0.2"    # optional: the peer's sync address; without it, multicast 224.0.0.240
//! key = "a long shared key"  # the key of the MAC on every sync datagram, at least 16 bytes
//!
//! [ha.config_sync]       # XML-RPC sync
//! sync_to = "10.255.0.2" # primary only: the peer to push to (the same as state_sync.peer)
//! port = 8443            # optional: TCP port of config sync on both boxes (default 8443)
//! username = "admin"     # both boxes: the shared credentials, checked both ways
//! password = "secret"
//! sections = ["rules", "aliases", "nat"]  # primary only, optional (default: all of them)
//!
//! [[dhcp]]               # a DHCPv4 server; at most one per interface
//! interface = "lan"
//! enabled = true         # optional (default true)
//! range = "192.168.0.150-192.168.0.199"  # or ranges = ["a-b", ...]: inside the interface's
//!                        # network, holding none of the box's addresses or VIPs
//! gateway = "192.168.0.10"   # optional: router option (default the interface's CARP VIP,
//!                            # else its address)
//! dns = ["192.168.0.10"]     # optional (default the gateway)
//! domain = "lan.example"     # optional
//! lease_time = 7200          # optional, seconds, 60..=31536000 (default 7200)
//! static = [{ mac = "02:00:00:00:00:99", ip = "192.168.0.50", hostname = "printer" }]
//! no_sync = false            # optional: config sync leaves this server on its box
//! ```
//!
//! **DHCP**: only the CARP master of the interface's VIP answers, with the VIP as server
//! identifier (renewals go to whichever box is master); leases are replicated over state sync.
//!
//! **Endpoints** (`source`, `destination` of filter and NAT rules) are inline tables
//! `{ address = "...", invert = false, port = ... }`, every key optional; a missing endpoint is
//! any address, any port. `address` is `"any"` (default), `"self"` (every address of this box,
//! its VIPs included: pfSense's "This firewall"), `"<interface> net"` (the interface's network,
//! e.g. `"lan net"`), an address `"10.0.0.1"`, a network `"10.0.0.0/8"`, or an alias name.
//! `invert = true` matches every address but those (the port is not inverted). `port` is an
//! integer `443` or a string `"443"` or `"1024-65535"` (inclusive, low first), only with
//! protocols tcp, udp and tcp/udp.
//!
//! **Translation** of an outbound NAT rule: `{ address = "...", port = ..., static_port = false }`.
//! `address` is `"interface address"` (default) or an address of this box: an interface address
//! or a VIP, as pfSense offers. `port` is the source port range to map into, `static_port = true`
//! keeps the source port; not both. A `no_nat` rule takes no translation.
//!
//! **Config sync sections** are the seed's checkboxes: `users`, `auth_servers`, `certificates`,
//! `rules`, `schedules`, `aliases`, `nat`, `ipsec`, `openvpn`, `dhcp`, `wol`, `static_routes`,
//! `load_balancer`, `virtual_ips`, `traffic_shaper`, `traffic_shaper_limiters`, `dns`,
//! `captive_portal` (see [`SyncSection`]).
//!
//! **CARP fast mode**: `advbase = 0` is accepted, as OpenBSD does; the advert interval is then
//! advskew/256 s alone, so advskew must be 1..=254 (e.g. 26 is about 100 ms).
//!
//! **Config sync port**: the seed's XML-RPC sync runs on the webGUI's HTTPS port (443). tandem has
//! no webGUI; its config sync is its own authenticated TCP service on the sync link, on port 8443
//! unless `ha.config_sync.port` says otherwise. A filter rule on the sync interface must pass it
//! (as the seed's rule passes 443), and pfsync too (protocol `pfsync`): rules on the sync
//! interface govern what may reach tandem's own sync services.
//!
//! # What is checked
//!
//! Besides each value's syntax and range: names are unique (interfaces, devices, aliases); every
//! interface, alias and `<interface> net` referred to exists; interface networks do not overlap;
//! a VIP is inside its interface's network, is not an interface's address, and a CARP VIP has its
//! interface's prefix length; the VIPs of one VHID on one interface (one CARP advertisement)
//! share password, advbase and advskew; gateways, the state sync peer and the config sync target
//! are on a connected network and are not this box's own addresses; the state sync interface
//! has role sync; config sync's target is state sync's peer; a NAT translation address is an
//! interface address or a VIP; ports only with tcp/udp, and port ranges low first.
//!
//! [`warnings`] names what is valid but weak: a CARP password under 8 bytes (its HMAC is
//! public on the LAN and a short password falls to an offline guess). `tandemd --check-config`
//! prints warnings on stderr and still exits 0; the daemon logs them when it starts.
//!
//! What one file cannot tell: that the two boxes' `host_id`s differ, and that their CARP
//! passwords agree.

mod dhcp;
mod error;
mod model;
mod raw;
mod secrets;
mod types;
mod validate;

use std::path::Path;

pub use dhcp::{Dhcp, DhcpStatic, DEFAULT_LEASE_TIME, MAX_HOSTNAME};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, ReadError};
pub use model::{
    AdaptiveBounds, Alias, Carp, CarpGroup, Config, ConfigSync, Filter, FilterRule, Ha, Interface,
    Nat, OutboundNat, OutboundNatRule, Routes, SrcConnRate, StateSync, StaticRoute, System,
    Translation, TranslationAddr, VipKind, VirtualIp, DEFAULT_CONFIG_SYNC_PORT, DEFAULT_RING_SIZE,
    DEFAULT_SRC_NODE_LIMIT, DEFAULT_STATE_LIMIT, DEFAULT_WORKERS, STATE_SYNC_MULTICAST,
};
pub use secrets::{mask_secrets, MASK};
pub use types::{
    Action, AddrSpec, AliasType, Endpoint, IfAddr, IpVersion, MacAddr, NatMode, PortRange, Prefix,
    Protocol, Role, SyncSection, VipType,
};

/// The largest config file tandem reads or takes over the control socket (a 10,000-rule file
/// is about 2 MB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and validates the config file at `path`. Errors name the file as `path` was given.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_file(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&path.display().to_string(), &text)
}

/// The text of a config file: a regular file of at most [`MAX_FILE_BYTES`], as UTF-8. Opened
/// non-blocking, so that a FIFO named as a config file cannot hang the caller in `open`, and
/// checked on the descriptor itself (a device such as /dev/zero never is read).
pub fn read_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegularFile);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::GrewTooLarge);
    }
    Ok(text)
}

/// What a valid config does that tandem advises against (a short CARP password), one per field,
/// in file order; `file_name` is how they name the file. Warnings never stop a config: an
/// existing cluster keeps running.
pub fn warnings(file_name: &str, config: &Config) -> Vec<ConfigWarning> {
    validate::warnings(file_name, config)
}

/// Parses and validates `text`; `file_name` is how errors name it.
pub fn parse(file_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(file_name, text, &e))?;
    validate::validate(file_name, &raw)
}

/// Turns toml's error (and the field path serde walked to it) into one located error.
fn toml_error(
    file: &str,
    text: &str,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let inner = e.inner();
    // In TOML's words: integers are read as i64 (so that validation can tell their range),
    // serde says map and sequence for table and array, and [x] for [[x]] is a usual slip.
    let lines: Vec<&str> = inner.message().trim().lines().collect();
    let message = lines
        .join("; ")
        .replace("expected i64", "expected an integer")
        .replace(
            "invalid type: map, expected a sequence",
            "expected an array of tables ([[...]]), found a table ([...])",
        )
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array");
    let path = e.path().to_string();
    let Some(span) = inner.span() else {
        return ConfigError::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
    };
    let (line, column) = line_column(text, span.start);
    if path == "." {
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    } else {
        ConfigError::Shape {
            file: file.to_owned(),
            path,
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
