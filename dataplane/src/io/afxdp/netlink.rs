//! The two kernel questions the ports ask outside of AF_XDP itself, through sockets so that they
//! answer for the calling thread's network namespace (sysfs answers for the namespace it was
//! mounted in, which is not the worker's when the worker entered another namespace with setns):
//!
//! - how many RX queues an interface has (`ETHTOOL_GCHANNELS`, falling back to the
//!   `IFLA_NUM_RX_QUEUES` netlink attribute for drivers without ethtool channels);
//! - which XDP program is attached to an interface, and removing it (rtnetlink `IFLA_XDP`).
//!
//! Messages are built as plain bytes in native endianness, as rtnetlink expects.

use std::ffi::CString;
use std::io;
use std::mem;

// rtnetlink constants (linux/if_link.h, linux/netlink.h), not all of which libc exports.
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
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

fn push_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn message(ty: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len());
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len()) as u32;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes()); // seq
    buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
                                                // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32.
    buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(attrs);
    buf
}

/// Sends one request, returns the first reply's bytes (an `RTM_NEWLINK` or an error/ack).
fn request(msg: &[u8]) -> io::Result<Vec<u8>> {
    let fd = Fd::new(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    // SAFETY: `msg` is valid for `msg.len()` bytes; a null address sends to the kernel.
    let rc = unsafe { libc::send(fd.0, msg.as_ptr().cast(), msg.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    if buf.len() < NLMSG_HDRLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink reply",
        ));
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    if ty == libc::NLMSG_ERROR as u16 {
        let code = buf
            .get(16..20)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(-libc::EIO);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(buf)
}

/// Attributes `(type, payload)` in `buf`, ignoring a malformed tail.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, payload))
    })
}

fn u32_of(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

fn link_info(ifindex: u32) -> io::Result<LinkInfo> {
    let reply = request(&message(
        libc::RTM_GETLINK,
        libc::NLM_F_REQUEST as u16,
        ifindex,
        &[],
    ))?;
    let ty = u16::from_ne_bytes([reply[4], reply[5]]);
    if ty != libc::RTM_NEWLINK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink reply",
        ));
    }
    let len = (u32_of(&reply).unwrap_or(0) as usize).min(reply.len());
    let body = reply
        .get(NLMSG_HDRLEN + IFINFOMSG_LEN..len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short RTM_NEWLINK"))?;
    let mut info = LinkInfo {
        num_rx_queues: 1,
        xdp: None,
    };
    for (ty, payload) in attrs(body) {
        match ty {
            IFLA_NUM_RX_QUEUES => info.num_rx_queues = u32_of(payload).unwrap_or(1),
            IFLA_XDP => {
                let (mut mode, mut prog_id) = (0u8, 0u32);
                for (ty, payload) in attrs(payload) {
                    match ty {
                        IFLA_XDP_ATTACHED => mode = payload.first().copied().unwrap_or(0),
                        IFLA_XDP_PROG_ID => prog_id = u32_of(payload).unwrap_or(0),
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

fn set_xdp_fd(ifindex: u32, fd: i32, flags: u32) -> io::Result<()> {
    let mut inner = Vec::new();
    push_attr(&mut inner, IFLA_XDP_FD, &fd.to_ne_bytes());
    push_attr(&mut inner, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut attrs = Vec::new();
    push_attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &inner);
    let msg = message(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        ifindex,
        &attrs,
    );
    request(&msg).map(drop)
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
}
