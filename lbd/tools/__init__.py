"""Operator tools: commands a person runs against a cluster or its manifests (``lbd migrate``).

Each tool is a pure module that decides (``migrate``: MetalLB objects in, lbd objects and
findings out) and a thin ``*_cli`` module that reads files or the cluster (through
:mod:`lbd.k8s`) and prints; the pure modules are tested with plain dicts.
"""
