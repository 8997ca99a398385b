"""``lbd migrate from-metallb``: read MetalLB's objects, print or write lbd's, report the rest.

    lbd migrate from-metallb (-f FILE ... | --from-cluster) [-o DIR] [--namespace NS]
                             [--check] [--lb-class CLASS] [--kubeconfig FILE]

The conversion is :mod:`lbd.tools.migrate` and the ``--check`` replay is
:mod:`lbd.tools.migrate_check`; this module reads (files, or the cluster through
:mod:`lbd.k8s.metallb`) and prints. The lbd objects go to stdout as YAML (or one file per object
with ``-o DIR``), the report to stderr, so ``lbd migrate from-metallb -f x.yaml | kubectl apply
-f -`` applies exactly the converted objects. The exit code is 1 only when the input cannot be
read (a missing file, YAML that does not parse, a document that is not a Kubernetes object, an
API server that cannot be reached); what does not convert is reported, never fatal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lbd.clihelp import examples

if TYPE_CHECKING:  # imported where used: `lbd status` registers this command too, and its
    # conversion and check modules are not needed to parse a command line
    from lbd.tools.migrate import Migration
    from lbd.tools.migrate_check import ObservedService, ServiceVerdict

PROG = "lbd migrate from-metallb"
EXAMPLES = """\
examples:
  # convert saved manifests, read the report, then apply
  lbd migrate from-metallb -f metallb-config.yaml > lbd-config.yaml
  # straight from the cluster MetalLB runs in, one file per object
  lbd migrate from-metallb --from-cluster -o lbd-config/
  # what would happen to each LoadBalancer Service under lbd
  lbd migrate from-metallb --from-cluster --check
"""
YAML_SUFFIXES = (".yaml", ".yml", ".json")


class InputError(Exception):
    """The input cannot be read: the message names the file (or the cluster) and the reason."""


def register(sub: Any) -> None:
    migrate = sub.add_parser(
        "migrate",
        help="move a configuration from another load balancer to lbd",
        description="Move a configuration from another load balancer to lbd.",
        epilog=examples(
            "lbd migrate from-metallb -f metallb-config.yaml > lbd-config.yaml",
            "lbd migrate from-metallb --from-cluster --check",
        ),
    )
    steps = migrate.add_subparsers(dest="migrate_command", metavar="SOURCE", required=True)
    p = steps.add_parser(
        "from-metallb",
        help="convert MetalLB IPAddressPools and L2Advertisements into lbd's",
        description="Convert MetalLB's IPAddressPool and L2Advertisement objects "
        "(metallb.io/v1beta1) into lbd's (lbd.io/v1beta1), and report on stderr everything "
        "that does not carry over (BGP objects, fields lbd lacks, pools nothing announces). "
        "Services need no change: lbd reads MetalLB's annotations.",
        epilog=EXAMPLES,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="FILE",
        help="YAML or JSON manifests (a file, a directory of them, or - for stdin); "
        "repeatable. Lists (kubectl get -o yaml) are read item by item",
    )
    source.add_argument(
        "--from-cluster",
        action="store_true",
        help="read MetalLB's objects from the cluster (--kubeconfig, $KUBECONFIG, in-cluster)",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="write one file per lbd object into DIR (created if missing) instead of stdout",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="MetalLB's namespace: its objects elsewhere are ignored, as MetalLB ignores them "
        "(default: every namespace)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="print, for each LoadBalancer Service (from the cluster or the files), whether "
        "lbd keeps its address and pool, instead of the YAML",
    )
    p.add_argument(
        "--lb-class",
        default=None,
        help="with --check: the class lbd will run with (default: Services without a class)",
    )
    p.add_argument(
        "--kubeconfig", default=None, metavar="FILE", help="kubeconfig file for --from-cluster"
    )
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- reading


def _documents(text: str, where: str) -> list[dict[str, Any]]:
    import yaml  # not at the top: `lbd --help` imports this module and must need no PyYAML

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs, 1):
        if doc is None:
            continue
        out += _objects(doc, f"{where}: document {i}")
    return out


def _objects(doc: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a Kubernetes object (a mapping with apiVersion and kind)")
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        return [o for i, item in enumerate(doc["items"]) for o in _objects(item, f"{where}[{i}]")]
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise InputError(f"{where}: not a Kubernetes object ({key} missing)")
    return [doc]


def read_files(names: Iterable[str], stdin: TextIO) -> list[dict[str, Any]]:
    """Every object in the named files and directories (``-`` is stdin)."""
    objects: list[dict[str, Any]] = []
    for name in names:
        if name == "-":
            objects += _documents(stdin.read(), "stdin")
            continue
        path = Path(name)
        files = (
            sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                text = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: cannot read: {exc}") from None
            objects += _documents(text, str(file))
    return objects


def read_cluster(kubeconfig: str | None, namespace: str | None, services: bool) -> Any:
    """MetalLB's objects (and Services, Namespaces) from the API server."""
    from lbd.k8s.client import ApiError, KubeconfigError, load_kube
    from lbd.k8s.metallb import read_cluster as read

    try:
        kube = load_kube(kubeconfig)
    except KubeconfigError as exc:  # names the flag or $KUBECONFIG and the reason
        raise InputError(str(exc)) from None
    try:
        return read(kube, namespace, services=services)
    except ApiError as exc:
        raise InputError(f"the API server refused a list: {exc}") from None


# --------------------------------------------------------------------------- printing


def dump(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as one multi-document YAML stream."""
    import yaml

    return "---\n".join(
        yaml.safe_dump(dict(o), sort_keys=False, default_flow_style=False) for o in objects
    )


def file_name(obj: Mapping[str, Any]) -> str:
    """``ipaddresspool-first-pool.yaml``: unique per kind and name (both cluster-scoped)."""
    return f"{str(obj['kind']).lower()}-{obj['metadata']['name']}.yaml"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report(migration: Migration, written: Sequence[str], out: TextIO) -> None:
    """The summary line, one line per finding (worst first), then the files written."""
    from lbd.tools.migrate import FindingKind

    order = list(FindingKind)
    counts = migration.counts()
    converted = ", ".join(_plural(n, k) for k, n in sorted(counts.items())) or "nothing"
    print(f"{PROG}: converted {converted}; {_plural(len(migration.findings), 'finding')}", file=out)
    for finding in sorted(migration.findings, key=lambda f: order.index(f.kind)):
        print(f"  {finding}", file=out)
    for name in written:
        print(f"  wrote {name}", file=out)


def verdict_table(verdicts: Sequence[ServiceVerdict]) -> str:
    """A kubectl-like table: one row per Service."""
    rows = [("SERVICE", "VERDICT", "METALLB", "LBD", "POOL", "WHY")]
    for v in verdicts:
        pool = v.pool_after or "-"
        if v.pool_before and v.pool_before != v.pool_after:
            pool = f"{v.pool_before} -> {pool}"
        rows.append(
            (
                v.key,
                v.verdict.value,
                ",".join(v.before) or "<pending>",
                ",".join(v.after) or "<pending>",
                pool,
                v.why or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + f"   {r[-1]}\n"
        for r in rows
    )


def observed_services(
    objects: Iterable[Mapping[str, Any]], lb_class: str | None
) -> list[ObservedService]:
    """The LoadBalancer Services lbd would handle, as ``--check`` needs them."""
    from lbd.core.model import service_key
    from lbd.k8s.service import observe_service
    from lbd.tools.migrate_check import ObservedService

    objs = list(objects)
    ns_labels = {
        str(o["metadata"].get("name")): dict(o["metadata"].get("labels") or {})
        for o in objs
        if o.get("kind") == "Namespace" and isinstance(o.get("metadata"), Mapping)
    }
    out = []
    for svc in objs:
        if svc.get("kind") != "Service" or not observe_service(svc).ours(lb_class):
            continue
        meta = svc.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        # a hand-written manifest may leave the namespace out; kubectl then applies it to "default"
        placed = observe_service({**svc, "metadata": {**meta, "namespace": ns}})
        request = placed.request_in(ns_labels.get(ns, {}))
        key = service_key(ns, str(meta.get("name")))
        # the pool it came from, under every prefix: the same reader as the controller's restore
        out.append(ObservedService(key, request, placed.addresses, placed.pool_hint))
    return out


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    from lbd.tools.migrate import from_metallb
    from lbd.tools.migrate_check import check

    try:
        if args.from_cluster:
            cluster = read_cluster(args.kubeconfig, args.namespace, services=args.check)
            objects = cluster.metallb + cluster.services + cluster.namespaces
            for kind in cluster.not_served:
                print(f"{PROG}: the cluster serves no metallb.io {kind}", file=sys.stderr)
        else:
            objects = read_files(args.filename, stdin or sys.stdin)
    except InputError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    migration = from_metallb(objects, args.namespace)
    written: list[str] = []
    if args.output_dir:
        out_dir = Path(args.output_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for obj in migration.objects:
                path = out_dir / file_name(obj)
                path.write_text(dump([obj]))
                written.append(str(path))
        except OSError as exc:
            print(f"{PROG}: -o {out_dir}: cannot write: {exc}", file=sys.stderr)
            return 1
    if args.check:
        services = observed_services(objects, args.lb_class)
        if not services:
            print(f"{PROG}: --check: no LoadBalancer Service to check", file=sys.stderr)
        sys.stdout.write(verdict_table(check(migration.config, services)))
    elif not args.output_dir:
        sys.stdout.write(dump(migration.objects))
    report(migration, written, sys.stderr)
    return 0
