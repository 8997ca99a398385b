"""Stand-ins for what a real cluster runs beside lbd: kube-proxy, the EndpointSlice controller
and the Service's pods (an echo service that answers with its node's name).

Each is a small ``lbd lab ...`` program the lab's supervisor runs in a node's or the control
plane's namespace; none of them is part of the product.
"""
