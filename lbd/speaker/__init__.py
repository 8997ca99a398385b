"""Speaker wiring: informers + heartbeats -> ``lbd.core.election`` -> ARP/NDP responder."""
