"""Every process of a lab, for each control plane: what ``plan.json`` tells the supervisor.

Both labs run the same lbd: two controllers in the control-plane namespace (leader election with
a short lease) and a speaker per node, each under its own ServiceAccount's credentials. Around
them:

- **stand-in** (docs/LAB.md, the network-namespace cluster): the API stand-in and the host
  forwarder (a byte pipe: the stand-in speaks TLS itself), the endpoints stand-in, and per node
  the kube-proxy stand-in and the echo service;
- **real** (docs/LAB.md, the lab on real components): ``lbd lab control-plane`` (etcd,
  kube-apiserver, kube-controller-manager), the host forwarder (a plain byte pipe: kube-apiserver
  speaks TLS itself, with a certificate valid for 127.0.0.1), and per node the real kube-proxy
  and the lab kubelet that runs the node's Pods.

Both run the speaker Pods' stand-in (``lbd lab speaker-pods``), whose Ready condition tells the
controller whether any speaker runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from lbd.lab.cluster.labdir import SYSTEM_NAMESPACE, LabFiles
from lbd.lab.cluster.layout import API_IPV4, API_PORT, Layout, Member
from lbd.lab.cluster.supervisor import ProcSpec

CONTROLLER_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:lbd-controller"
SPEAKER_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:lbd-speaker"


def lbd_argv(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "lbd", *args)


def _controllers(files: LabFiles, layout: Layout, count: int) -> list[ProcSpec]:
    return [
        ProcSpec(
            f"controller-{i}",
            lbd_argv(
                "controller",
                "--kubeconfig",
                str(files.component_kubeconfig("controller")),
                "--leader-elect",
                # Shorter than the production defaults (15/10/2 s) so that a killed
                # leader is replaced within seconds in the demo and the tests.
                "--lease-duration",
                "6",
                "--renew-deadline",
                "4",
                "--retry-period",
                "1",
                # NoLiveSpeaker after 3 s without a Ready speaker Pod (10 s by default)
                "--speaker-grace",
                "3",
                "--health-addr",
                f"127.0.0.1:{7471 + i}",
            ),
            netns=layout.control_plane.netns,
            env={"POD_NAMESPACE": SYSTEM_NAMESPACE, "POD_NAME": f"lbd-controller-{i}"},
        )
        for i in range(1, count + 1)
    ]


def _speaker(files: LabFiles, node: Member, extra: tuple[str, ...]) -> ProcSpec:
    return ProcSpec(
        f"speaker-{node.name}",
        lbd_argv(
            "speaker",
            "--node-name",
            node.name,
            "--kubeconfig",
            str(files.component_kubeconfig("speaker")),
            "--membership-key",
            str(files.membership_key),
            *extra,
        ),
        netns=node.netns,
        env={"NODE_NAME": node.name},
    )


def _speaker_pods(files: LabFiles, layout: Layout) -> ProcSpec:
    """The speakers' Pods, Ready while the supervisor runs each (lbd/lab/standins/speakerpods.py:
    what the controller reads to tell that no speaker runs)."""
    return ProcSpec(
        "speaker-pods",
        lbd_argv(
            "lab", "speaker-pods", "--dir", str(files.dir), "--kubeconfig", str(files.kubeconfig)
        ),
        netns=layout.control_plane.netns,
    )


def _plan(
    layout: Layout,
    files: LabFiles,
    api: ProcSpec,
    node_procs: Callable[[Member], list[ProcSpec]],
    *,
    controllers: int,
    speaker_args: tuple[str, ...],
    extra: tuple[ProcSpec, ...] = (),
) -> list[ProcSpec]:
    """What both labs run around their API server ``api`` (and the ``extra`` processes of the
    control plane) and each node's ``node_procs``: the host forwarder (the API server speaks TLS
    itself: it passes bytes through), the speaker Pods' stand-in, the controllers, and a speaker
    per node."""
    procs = [
        api,
        ProcSpec(
            "forward",
            lbd_argv("lab", "forward", "--to", f"{API_IPV4}:{API_PORT}"),
            netns=layout.control_plane.netns,
            pass_listener=True,
            autostart=True,
        ),
        *extra,
        _speaker_pods(files, layout),
        *_controllers(files, layout, controllers),
    ]
    for node in layout.nodes:
        procs += [_speaker(files, node, speaker_args), *node_procs(node)]
    return procs


def stand_in(
    layout: Layout,
    files: LabFiles,
    *,
    controllers: int,
    rbac: tuple[Path, ...],
    tokens: dict[str, str],
    speaker_args: tuple[str, ...] = (),
) -> list[ProcSpec]:
    """The stand-in lab: API stand-in, forwarder, endpoints; kube-proxy stand-in and echo."""
    cp = layout.control_plane.netns
    token_args = ["--admin-token", tokens["admin"]]
    for token, user in ((tokens["controller"], CONTROLLER_SA), (tokens["speaker"], SPEAKER_SA)):
        token_args += ["--token", f"{token}={user}"]
    rbac_args: list[str] = []
    for path in rbac:
        rbac_args += ["--rbac", str(path)]
    apiserver = ProcSpec(
        "apiserver",
        lbd_argv(
            "lab",
            "apiserver",
            "--listen",
            f"{API_IPV4}:{API_PORT}",
            "--crds",
            str(files.manifests),
            "--tls-cert",
            str(files.tls / "tls.crt"),
            "--tls-key",
            str(files.tls / "tls.key"),
            *rbac_args,
            *token_args,
        ),
        netns=cp,
        autostart=True,
    )
    endpoints = ProcSpec(
        "endpoints", lbd_argv("lab", "endpoints", "--kubeconfig", str(files.kubeconfig)), cp
    )

    def node_procs(node: Member) -> list[ProcSpec]:
        return [
            ProcSpec(
                f"kube-proxy-{node.name}",
                lbd_argv(
                    "lab",
                    "kube-proxy",
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    str(files.kubeconfig),
                ),
                netns=node.netns,
            ),
            ProcSpec(
                f"echo-{node.name}", lbd_argv("lab", "echo", "--node-name", node.name), node.netns
            ),
        ]

    return _plan(
        layout,
        files,
        apiserver,
        node_procs,
        controllers=controllers,
        speaker_args=speaker_args,
        extra=(endpoints,),
    )


def real(
    layout: Layout,
    files: LabFiles,
    *,
    controllers: int,
    manifests: tuple[Path, ...],
    kube_proxy: Path,
    assets: Path,
    speaker_args: tuple[str, ...] = (),
) -> list[ProcSpec]:
    """The real lab: control plane, forwarder; real kube-proxy and the lab kubelet per node."""
    cp = layout.control_plane.netns
    manifest_args: list[str] = []
    for path in manifests:
        manifest_args += ["--manifest", str(path)]
    control_plane = ProcSpec(
        "control-plane",
        lbd_argv("lab", "control-plane", "--dir", str(files.dir), *manifest_args),
        netns=cp,
        # find_binaries() in that process sees the folder this lab was started with
        env={"KUBEBUILDER_ASSETS": str(assets)},
        autostart=True,
    )

    def node_procs(node: Member) -> list[ProcSpec]:
        return [
            ProcSpec(
                f"kube-proxy-{node.name}",
                (str(kube_proxy), f"--config={files.kube_proxy_config(node.name)}"),
                netns=node.netns,
            ),
            ProcSpec(
                f"kubelet-{node.name}",
                lbd_argv(
                    "lab",
                    "kubelet",
                    "--dir",
                    str(files.dir),
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    str(files.kubeconfig),
                ),
                netns=node.netns,
                host_mounts=True,
            ),
        ]

    return _plan(
        layout, files, control_plane, node_procs, controllers=controllers, speaker_args=speaker_args
    )
