//! The lab's fixed addresses, as `scripts/lab` builds them (DESIGN.md §4).

use std::fmt;
use std::net::Ipv4Addr;

/// A box of the lab. Its namespace is the lab's prefix followed by [`Node::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// LAN host, `eth0` 192.168.0.100/24, default route via the LAN VIP.
    Client,
    /// The "internet", `eth0` 172.25.46.1/24, default route via the WAN VIP.
    Server,
    /// Firewall A: `lan`, `wan` (dataplane, no kernel address), `sync` 10.255.0.1/24.
    Fwa,
    /// Firewall B: `lan`, `wan` (dataplane, no kernel address), `sync` 10.255.0.2/24.
    Fwb,
    /// The switch: bridges `lan`, `wan`, `sync` and their ports.
    Switch,
}

impl Node {
    /// Every node, in the order `scripts/lab` creates them.
    pub const ALL: [Node; 5] = [
        Node::Client,
        Node::Server,
        Node::Fwa,
        Node::Fwb,
        Node::Switch,
    ];

    /// The node's name in namespace names and in `scripts/lab exec`.
    pub const fn name(self) -> &'static str {
        match self {
            Node::Client => "client",
            Node::Server => "server",
            Node::Fwa => "fwa",
            Node::Fwb => "fwb",
            Node::Switch => "sw",
        }
    }

    /// The MAC address byte of the box in `02:00:00:00:BOX:IF`; the switch has none.
    const fn box_byte(self) -> Option<u8> {
        match self {
            Node::Client => Some(0x01),
            Node::Server => Some(0x02),
            Node::Fwa => Some(0x0a),
            Node::Fwb => Some(0x0b),
            Node::Switch => None,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The stable MAC address of `ifname` on `node`: `02:00:00:00:BOX:IF`, BOX 01 client, 02 server,
/// 0a fwa, 0b fwb; IF 00 eth0, 01 lan, 02 wan, 03 sync. `None` for interfaces the lab does not
/// pin (the switch's bridges and ports, `lo`, names that do not exist on that node).
pub fn mac(node: Node, ifname: &str) -> Option<[u8; 6]> {
    let b = node.box_byte()?;
    let i = match (node, ifname) {
        (Node::Client | Node::Server, "eth0") => 0x00,
        (Node::Fwa | Node::Fwb, "lan") => 0x01,
        (Node::Fwa | Node::Fwb, "wan") => 0x02,
        (Node::Fwa | Node::Fwb, "sync") => 0x03,
        _ => return None,
    };
    Some([0x02, 0, 0, 0, b, i])
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` prints it.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The client, on the LAN.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
/// The server, the "internet" beyond the WAN.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 1);
/// LAN subnet prefix length (192.168.0.0/24).
pub const LAN_PREFIX_LEN: u8 = 24;
/// WAN subnet prefix length (172.25.46.0/24).
pub const WAN_PREFIX_LEN: u8 = 24;
/// The LAN CARP VIP: the client's default gateway.
pub const LAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
/// VHID of the LAN VIP.
pub const LAN_VHID: u8 = 2;
/// The WAN CARP VIP: the server's default gateway and the NAT address.
pub const WAN_VIP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 100);
/// VHID of the WAN VIP.
pub const WAN_VHID: u8 = 1;
/// fwa's own LAN address (held by the dataplane, not the kernel).
pub const FWA_LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
/// fwb's own LAN address (held by the dataplane, not the kernel).
pub const FWB_LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 12);
/// fwa's own WAN address (held by the dataplane, not the kernel).
pub const FWA_WAN_IP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 101);
/// fwb's own WAN address (held by the dataplane, not the kernel).
pub const FWB_WAN_IP: Ipv4Addr = Ipv4Addr::new(172, 25, 46, 102);
/// fwa's sync address (kernel-owned, /24).
pub const FWA_SYNC_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
/// fwb's sync address (kernel-owned, /24).
pub const FWB_SYNC_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_scheme_matches_the_script() {
        assert_eq!(mac(Node::Fwa, "lan"), Some([2, 0, 0, 0, 0x0a, 1]));
        assert_eq!(
            mac_string(mac(Node::Fwb, "wan").unwrap()),
            "02:00:00:00:0b:02"
        );
        assert_eq!(
            mac_string(mac(Node::Client, "eth0").unwrap()),
            "02:00:00:00:01:00"
        );
        assert_eq!(
            mac_string(mac(Node::Server, "eth0").unwrap()),
            "02:00:00:00:02:00"
        );
        assert_eq!(mac(Node::Fwa, "eth0"), None);
        assert_eq!(mac(Node::Switch, "lan"), None);
    }

    #[test]
    fn no_node_name_is_a_suffix_of_another() {
        // What keeps the namespaces of two prefixes apart ({P}NODE never equals {Q}OTHER).
        for a in Node::ALL {
            for b in Node::ALL {
                if a != b {
                    assert!(!a.name().ends_with(b.name()), "{a} ends with {b}");
                }
            }
        }
    }
}
