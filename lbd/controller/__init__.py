"""Controller wiring: informers -> work queue -> ``lbd.core.ipam`` -> status writer."""
