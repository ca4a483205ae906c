//! The two kernel questions the ports ask outside of AF_XDP itself, through sockets so that they
//! answer for the calling thread's network namespace (sysfs answers for the namespace it was
//! mounted in, which is not the worker's when the worker entered another namespace with setns):
//!
//! - how many RX queues an interface has (`ETHTOOL_GCHANNELS`, falling back to the
//!   `IFLA_NUM_RX_QUEUES` netlink attribute for drivers without ethtool channels);
//! - which XDP program is attached to an interface, and removing it (rtnetlink `IFLA_XDP`).
//!
//! rtnetlink messages are built and parsed by `netlink-packet-route` and sent on a blocking
//! `netlink-sys` socket. The crate parses the whole `RTM_NEWLINK` (attributes it does not know
//! are kept as raw bytes), so a reply it cannot read is an `InvalidData` error where a parser of
//! only the two attributes we need would have skipped the rest.
//!
//! The ethtool ioctl stays a raw call: the crate that speaks ethtool (`ethtool`, over generic
//! netlink, 0.3) is async only (tokio by default, else async-std) and would bring a runtime into
//! the dataplane for one 36-byte struct; the ioctl is also what the `ethtool` tool itself falls
//! back to on kernels without ethtool netlink.

use std::ffi::CString;
use std::io;
use std::mem;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

// `IFLA_XDP_ATTACHED` values (linux/if_link.h), as `AttachedXdp::mode` keeps them.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;
// `IFLA_XDP_FLAGS` modes (linux/if_link.h); neither libc nor netlink-packet-route exports them.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// An XDP program attached to an interface, as rtnetlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachedXdp {
    /// Kernel id of the program (for libxdp's dispatcher, the dispatcher's id).
    pub prog_id: u32,
    /// `IFLA_XDP_ATTACHED`: 1 native, 2 generic (skb), 3 offloaded, 4 several.
    pub mode: u8,
}

impl AttachedXdp {
    /// The attach mode by the name `ip link` gives it: `native` (the driver runs the program,
    /// `xdpdrv`), `generic` (after the kernel built an skb, `xdpgeneric`), `offload`, `multi`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            1 => "native",
            2 => "generic",
            3 => "offload",
            4 => "multi",
            _ => "unknown",
        }
    }
}

/// The kernel's index of interface `name` in the calling thread's namespace.
pub fn kernel_ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// Number of RX queues of `name`: ethtool channels (rx + combined), else `IFLA_NUM_RX_QUEUES`.
pub fn rx_queue_count(name: &str) -> io::Result<u32> {
    let ifindex = kernel_ifindex(name)?;
    match ethtool_rx_channels(name) {
        Ok(n) if n > 0 => Ok(n),
        _ => Ok(link_info(ifindex)?.num_rx_queues),
    }
}

/// The XDP program attached to `name`, if any.
pub fn attached_xdp(name: &str) -> io::Result<Option<AttachedXdp>> {
    Ok(link_info(kernel_ifindex(name)?)?.xdp)
}

/// Detaches whatever XDP program is attached to `name` (in each mode it is attached in).
pub fn detach_xdp(name: &str) -> io::Result<()> {
    let ifindex = kernel_ifindex(name)?;
    let Some(xdp) = link_info(ifindex)?.xdp else {
        return Ok(());
    };
    let modes: &[u32] = match xdp.mode {
        XDP_ATTACHED_DRV => &[XDP_FLAGS_DRV_MODE],
        XDP_ATTACHED_SKB => &[XDP_FLAGS_SKB_MODE],
        XDP_ATTACHED_HW => &[XDP_FLAGS_HW_MODE],
        XDP_ATTACHED_MULTI => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_HW_MODE],
        _ => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
    };
    for &flags in modes {
        set_xdp_fd(ifindex, -1, flags)?;
    }
    Ok(())
}

fn ethtool_rx_channels(name: &str) -> io::Result<u32> {
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count (all u32).
    let mut channels = [0u32; 9];
    channels[0] = ETHTOOL_GCHANNELS;
    // SAFETY: all-zero bytes are a valid `ifreq`.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = channels.as_mut_ptr().cast();
    let fd = Fd::new(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: SIOCETHTOOL reads `ifr` and writes at most `sizeof(struct ethtool_channels)`
    // (36 bytes) through `ifru_data`, which points at `channels`, alive for the call.
    let rc = unsafe { libc::ioctl(fd.0, libc::SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(channels[5] + channels[8])
}

/// An owned socket descriptor, closed on drop.
struct Fd(libc::c_int);

impl Fd {
    fn new(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<Self> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

struct LinkInfo {
    num_rx_queues: u32,
    xdp: Option<AttachedXdp>,
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// `msg` as the bytes of one netlink message with header flags `flags`.
fn encode(msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    packet.header.flags = flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// Sends one request to the kernel and reads its one reply: the answer (`Some`), or for a
/// request with `NLM_F_ACK` the acknowledgement (`None`). A kernel error becomes its errno.
fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Option<RouteNetlinkMessage>> {
    let buf = encode(msg, flags);
    let socket = Socket::new(NETLINK_ROUTE)?;
    // Port 0 is the kernel.
    socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io()),
        NetlinkPayload::Error(_) => Ok(None),
        NetlinkPayload::InnerMessage(m) => Ok(Some(m)),
        _ => Err(invalid_data("unexpected netlink reply")),
    }
}

/// `IFLA_XDP_ATTACHED` as the kernel's number, which `AttachedXdp::mode` keeps; 0 for none.
fn attached_mode(a: &XdpAttached) -> u8 {
    match a {
        XdpAttached::None => 0,
        XdpAttached::Driver => XDP_ATTACHED_DRV,
        XdpAttached::SocketBuffer => XDP_ATTACHED_SKB,
        XdpAttached::Hardware => XDP_ATTACHED_HW,
        XdpAttached::Multiple => XDP_ATTACHED_MULTI,
        XdpAttached::Other(n) => *n,
        // A mode the crate learned after this code was written: attached, in a way we cannot
        // name (`mode_name` says "unknown", `detach_xdp` tries native and generic).
        _ => u8::MAX,
    }
}

fn link_info(ifindex: u32) -> io::Result<LinkInfo> {
    let mut get = LinkMessage::default();
    get.header.index = ifindex;
    let Some(RouteNetlinkMessage::NewLink(link)) =
        request(RouteNetlinkMessage::GetLink(get), NLM_F_REQUEST)?
    else {
        return Err(invalid_data("unexpected netlink reply"));
    };
    let mut info = LinkInfo {
        num_rx_queues: 1,
        xdp: None,
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::NumRxQueues(n) => info.num_rx_queues = *n,
            LinkAttribute::Xdp(xdp) => {
                let (mut mode, mut prog_id) = (0u8, 0u32);
                for x in xdp {
                    match x {
                        LinkXdp::Attached(a) => mode = attached_mode(a),
                        LinkXdp::ProgId(id) => prog_id = *id,
                        _ => {}
                    }
                }
                if mode != 0 {
                    info.xdp = Some(AttachedXdp { prog_id, mode });
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// `RTM_SETLINK` setting XDP program `fd` (-1: none) on `ifindex` in mode `flags`.
fn set_xdp_message(ifindex: u32, fd: i32, flags: u32) -> RouteNetlinkMessage {
    let mut set = LinkMessage::default();
    set.header.index = ifindex;
    set.attributes.push(LinkAttribute::Xdp(vec![
        LinkXdp::Fd(fd),
        LinkXdp::Flags(flags),
    ]));
    RouteNetlinkMessage::SetLink(set)
}

fn set_xdp_fd(ifindex: u32, fd: i32, flags: u32) -> io::Result<()> {
    request(
        set_xdp_message(ifindex, fd, flags),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Read-only questions about `lo`, which every namespace has with index 1, no XDP program and
    // no ethtool channels (so the queue count comes from `IFLA_NUM_RX_QUEUES`).
    #[test]
    fn loopback_link_info() {
        assert_eq!(kernel_ifindex("lo").unwrap(), 1);
        assert!(rx_queue_count("lo").unwrap() >= 1);
        assert_eq!(attached_xdp("lo").unwrap(), None);
        // Nothing attached: nothing sent.
        detach_xdp("lo").unwrap();
    }

    #[test]
    fn missing_interface_is_an_os_error() {
        let err = kernel_ifindex("tandem-none0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        // The kernel's NLMSG_ERROR comes back as its errno.
        let err = link_info(u32::MAX >> 1).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    }

    /// The detach request byte for byte (native endianness, as rtnetlink takes it): what the
    /// hand-built message of before sent, but for `NLA_F_NESTED` on `IFLA_XDP`, which the crate
    /// leaves out and the kernel does not require there (`nla_parse_nested_deprecated`).
    #[test]
    fn detach_request_bytes() {
        let got = encode(
            set_xdp_message(7, -1, XDP_FLAGS_DRV_MODE),
            NLM_F_REQUEST | NLM_F_ACK,
        );
        let mut want = Vec::new();
        // nlmsghdr: length, RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, sequence 1, port 0.
        want.extend_from_slice(&52u32.to_ne_bytes());
        want.extend_from_slice(&libc::RTM_SETLINK.to_ne_bytes());
        want.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        // ifinfomsg: AF_UNSPEC, pad, type 0, index 7, flags 0, change 0.
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&7i32.to_ne_bytes());
        want.extend_from_slice(&[0; 8]);
        // IFLA_XDP (43) holding IFLA_XDP_FD (1) = -1 and IFLA_XDP_FLAGS (3) = XDP_FLAGS_DRV_MODE.
        want.extend_from_slice(&20u16.to_ne_bytes());
        want.extend_from_slice(&43u16.to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&(-1i32).to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&3u16.to_ne_bytes());
        want.extend_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
        assert_eq!(got, want);
    }
}
