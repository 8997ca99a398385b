"""Which Linux capabilities the speaker holds, and what it does without each, said at start.

The speaker needs one capability and can use two more (capabilities(7)):

- ``NET_RAW`` (required): raw AF_PACKET sockets, to receive ARP/NDP requests and send replies and
  gratuitous announcements. Without it this node answers for no VIP (heartbeats still work, so
  its peers would still elect it: the manifests always grant it).
- ``NET_ADMIN`` (optional): ``SO_RCVBUFFORCE`` gives each raw socket a 4 MiB receive buffer.
  Without it ``SO_RCVBUF`` is capped at ``net.core.rmem_max`` (208 KiB by default, about 300
  small frames: a burst larger than that while the answering thread waits for a CPU is dropped
  by the kernel and counted in ``lbd_receive_buffer_drops_total``).
- ``SYS_NICE`` (optional): real-time round-robin priority for the answering and heartbeat threads
  (:mod:`lbd.net.priority`). Without it they run at normal priority and, on a busy node, a reply
  waits for a CPU like any other thread (tests/bench/bench_speaker.py with ``--drop-caps``
  measures the difference; README and deploy/base/speaker.yaml quote it).

Nothing fails silently: :func:`report` logs what is held and, for each missing one, what the
speaker does without it, and sets ``lbd_speaker_capability{capability}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from lbd.metrics import SpeakerMetrics

log = logging.getLogger(__name__)

# capability numbers from <linux/capability.h>
CAPABILITIES: Mapping[str, int] = {"NET_ADMIN": 12, "NET_RAW": 13, "SYS_NICE": 23}

WITHOUT: Mapping[str, str] = {
    "NET_RAW": "cannot open raw ARP/NDP sockets: this node answers for no VIP",
    "NET_ADMIN": "receive buffers stay at net.core.rmem_max ({rmem_max} bytes): bursts beyond "
    "it are dropped by the kernel (lbd_receive_buffer_drops_total)",
    "SYS_NICE": "answering and heartbeat threads run at normal priority: on a busy node replies "
    "wait for a CPU (slower tail latency; see README)",
}


def effective(status: str) -> frozenset[str]:
    """The capabilities of :data:`CAPABILITIES` in the ``CapEff`` line of /proc/PID/status."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return frozenset(name for name, bit in CAPABILITIES.items() if mask >> bit & 1)
    return frozenset()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def report(
    metrics: SpeakerMetrics | None = None,
    *,
    status: str | None = None,
    rmem_max: str | None = None,
) -> frozenset[str]:
    """Log the capabilities held and what the speaker does without each missing one."""
    held = effective(_read("/proc/self/status") if status is None else status)
    rmem = (_read("/proc/sys/net/core/rmem_max") if rmem_max is None else rmem_max).strip()
    missing = sorted(CAPABILITIES.keys() - held)
    log.info(
        f"capabilities: holds {', '.join(sorted(held)) or 'none'} of "
        f"{', '.join(sorted(CAPABILITIES))}; missing {', '.join(missing) or 'none'}"
    )
    for name in missing:
        level = logging.ERROR if name == "NET_RAW" else logging.WARNING
        text = WITHOUT[name].format(rmem_max=rmem or "?")
        log.log(level, f"without {name}: {text}", extra={"key": name})
    if metrics is not None:
        for name in CAPABILITIES:
            metrics.capability.labels(name).set(1 if name in held else 0)
    return held
