"""The lab: a Kubernetes API stand-in and a network-namespace cluster for demos and tests."""
