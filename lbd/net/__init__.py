"""The network adapter: the only package (besides the lab) that imports scapy, pyroute2 or
opens sockets."""
