"""Where the real binaries are: envtest's search order, then the folder ``make k8s`` fills.

For each binary (``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kube-proxy``,
``kubectl``), as controller-runtime's envtest looks (``process/bin_path_finder.go``):

1. ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER``), a path to that one binary;
2. ``$KUBEBUILDER_ASSETS/<name>``: a folder with your own binaries, used as it is;
3. the checkout's ``.k8s/<kubernetes version>-etcd<etcd version>/bin/<name>``, which
   ``make k8s`` builds from the Go modules pinned in ``tests/realk8s/`` (the versions are read
   from those ``go.mod`` files, so a new pin never picks up binaries of the old one).

When a required one is missing, :class:`BinariesMissingError` says which and how to get them.
etcd, kube-apiserver and kube-controller-manager are required (the tests need the namespace and
garbage-collector controllers); kube-proxy (the lab's nodes) and kubectl are optional, so an
envtest asset folder plus kube-controller-manager is enough for the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kubectl")
REQUIRED = NAMES[:3]
CHECKOUT = Path(__file__).resolve().parents[3]
PINS = CHECKOUT / "tests" / "realk8s"
HOW_TO_BUILD = "build them with `make k8s` (needs Go >= 1.26), or set KUBEBUILDER_ASSETS"


class BinariesMissingError(RuntimeError):
    """The real binaries are not there; the message says which and how to get them."""


@dataclass(frozen=True, slots=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_proxy: Path | None
    kubectl: Path | None

    @property
    def folder(self) -> Path:
        return self.kube_apiserver.parent


def _pinned(module_dir: str, module: str) -> str | None:
    """The version of ``module`` the wrapper module ``tests/realk8s/<module_dir>`` requires."""
    try:
        lines = (PINS / module_dir / "go.mod").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        words = line.split()
        if words[:2] == ["require", module] and len(words) >= 3:
            return words[2]
        if words[:1] == [module] and len(words) >= 2:
            return words[1]
    return None


def built_folder() -> Path | None:
    """The folder ``make k8s`` builds into (``None`` outside a checkout)."""
    kube = _pinned("kube", "k8s.io/kubernetes")
    etcd = _pinned("etcd", "go.etcd.io/etcd/server/v3")
    if kube is None or etcd is None:
        return None
    return CHECKOUT / ".k8s" / f"{kube}-etcd{etcd.removeprefix('v')}" / "bin"


def _candidate(name: str) -> Path | None:
    explicit = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if explicit:
        return Path(explicit)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        return Path(assets) / name
    folder = built_folder()
    return folder / name if folder is not None else None


def find_binaries(required: tuple[str, ...] = REQUIRED) -> Binaries:
    """The real binaries, or :class:`BinariesMissingError` naming what is missing and why."""
    found: dict[str, Path | None] = {}
    missing: list[str] = []
    for name in NAMES:
        path = _candidate(name)
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        elif name in required:
            missing.append(f"{name} ({path or 'no folder to look in'})")
        else:
            found[name] = None
    if missing:
        where = (
            "KUBEBUILDER_ASSETS" if os.environ.get("KUBEBUILDER_ASSETS") else "the make k8s folder"
        )
        raise BinariesMissingError(
            f"real Kubernetes binaries not found in {where}: {', '.join(missing)}; {HOW_TO_BUILD}"
        )
    etcd, apiserver, kcm = (found[n] for n in REQUIRED)
    assert etcd is not None and apiserver is not None and kcm is not None
    return Binaries(etcd, apiserver, kcm, found["kube-proxy"], found["kubectl"])
