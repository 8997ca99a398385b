"""AF_PACKET socket helpers: open one raw socket per interface for ARP and NDP.

One socket per interface receives both ARP (ethertype 0x0806) and ICMPv6 (IPv6 next header 58)
thanks to a classic BPF filter attached in the kernel, so the Python loop never sees the bulk
of the interface's traffic. Outgoing frames are ignored in the kernel too
(``PACKET_IGNORE_OUTGOING``, Linux >= 4.20), otherwise every reply would come back to us.

Solicited-node multicast groups are joined per socket with ``PACKET_ADD_MEMBERSHIP``
(``PACKET_MR_MULTICAST`` with the 33:33:ff:xx:xx:xx address): the kernel adds the MAC to the
NIC's filter and drops the membership when the socket closes, so nothing leaks if we crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33

# tcpdump -dd 'arp or (ip6 and ip6[6] == 58)' without the IPv6 extension-header walk:
#   ldh [12]; jeq 0x806 -> accept; jeq 0x86dd -> next else drop; ldb [20]; jeq 58 -> accept;
#   accept: ret 0x40000; drop: ret 0
_FILTER = (
    (0x28, 0, 0, 12),
    (0x15, 3, 0, 0x0806),
    (0x15, 0, 3, 0x86DD),
    (0x30, 0, 0, 20),
    (0x15, 0, 1, 58),
    (0x06, 0, 0, 0x40000),
    (0x06, 0, 0, 0),
)


def attach_filter(sock: socket.socket) -> None:
    """Attach the ARP-or-ICMPv6 filter (struct sock_fprog -> array of struct sock_filter)."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in _FILTER)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(_FILTER), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_packet_socket(ifname: str, *, rcvbuf: int = 4 << 20) -> tuple[socket.socket, bytes]:
    """A non-blocking raw socket bound to ``ifname`` and that interface's MAC address."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        attach_filter(sock)
        # Old kernels lack it: our own frames then come back and are dropped as FromSelf.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        # A large buffer absorbs bursts while the single Python thread catches up. SO_RCVBUF is
        # capped by net.core.rmem_max (often 208 KiB, ~300 small frames); SO_RCVBUFFORCE goes
        # past the cap but needs CAP_NET_ADMIN, which the speaker holds only if the operator
        # grants it (an option in deploy/; the default grants NET_RAW alone). Without it we
        # fall back to the capped buffer: lbd.net.capabilities says so at start, and kernel
        # drops are counted (take_drops, lbd_receive_buffer_drops_total).
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # EPERM without CAP_NET_ADMIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
        mac = sock.getsockname()[4]
        # Drain what arrived between socket() and the filter: it bypassed the filter.
        while True:
            try:
                sock.recv(65535)
            except BlockingIOError:
                break
    except BaseException:
        sock.close()
        raise
    return sock, bytes(mac[:6])


def set_multicast(sock: socket.socket, ifindex: int, mac: bytes, join: bool) -> None:
    """Join or leave an Ethernet multicast group on the socket's interface (struct packet_mreq)."""
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_MULTICAST, len(mac), mac)
    opt = PACKET_ADD_MEMBERSHIP if join else PACKET_DROP_MEMBERSHIP
    sock.setsockopt(SOL_PACKET, opt, mreq)


def take_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because our receive buffer was full, since the last call.

    ``PACKET_STATISTICS`` (struct tpacket_stats: packets, drops) resets on every read.
    """
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)
