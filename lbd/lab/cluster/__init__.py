"""The network-namespace cluster the lab builds: a switch, a control plane, nodes and a client.

:mod:`.layout` plans names and addresses, :mod:`.topology` builds the namespaces and links,
:mod:`.supervisor` runs every lab process, :mod:`.bootstrap` creates what a real cluster would
already have, :mod:`.lab` ties them together (``lbd lab up/down/kill-node/restore-node``),
:mod:`.forward` brings the API to the host and :mod:`.probe` is what the external client sees.
"""
