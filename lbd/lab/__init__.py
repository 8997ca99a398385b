"""The lab: everything lbd needs to be seen working without a real cluster; never shipped.

Sub-packages, each named for what it is:

- :mod:`lbd.lab.apiserver`: a Kubernetes API stand-in (CRDs, RBAC, watches, faults);
- :mod:`lbd.lab.cluster`: the network-namespace cluster (``lbd lab up``);
- :mod:`lbd.lab.standins`: kube-proxy, EndpointSlice and echo stand-ins run inside it;
- :mod:`lbd.lab.scenarios`: the narrated demo and the scenario steps the e2e tests share;
- :mod:`lbd.lab.cli` and :mod:`lbd.lab.commands`: the ``lbd lab ...`` sub-commands.

The product never imports this package (an import-linter contract in ``pyproject.toml``) and
the wheel leaves it out, so the container image has no lab; ``lbd lab`` works from a checkout.
"""
