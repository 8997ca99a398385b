"""Best-effort scheduling priority for the threads that must not wait for a CPU.

On a busy node a normal thread can wait milliseconds (tens under heavy load) for a CPU after its
packet arrived, while the kernel answers ARP for its own addresses in softirq context within
microseconds. The responder's receive threads and the heartbeat threads therefore ask for a
real-time round-robin priority: they sleep in ``recv``/``select`` almost all the time, and the
kernel's real-time throttling (``sched_rt_runtime_us``, 95 % by default) still leaves CPU to
everything else under a flood. Without CAP_SYS_NICE the request falls back to ``nice -10`` and
then to nothing; lbd works either way, only its tail latency differs (see tests/bench).

The priority needs CAP_SYS_NICE, an option of the manifests (deploy/base/speaker.yaml); the
speaker says at start whether it has it (:mod:`lbd.net.capabilities`). Measured with
``tests/bench/bench_speaker.py --steps lbd --rates 5000,40000 --load 2 [--drop-caps SYS_NICE]``
on a shared 2-core machine (load average 8-10): ARP reply p99 at 5 000 requests/s 0.08-0.13 ms
with the real-time priority, 17-99 ms without; at 40 000 requests/s no frame dropped with it, a
third to a half of them dropped without.
"""

from __future__ import annotations

import contextlib
import os
import threading


def raise_thread_priority(rt_priority: int | None) -> str:
    """Apply to the *calling* thread; returns what was granted ("rr", "nice" or "none")."""
    if rt_priority is None:
        return "none"
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rt_priority))
        return "rr"
    except (OSError, AttributeError):
        pass
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        return "nice"
    return "none"
