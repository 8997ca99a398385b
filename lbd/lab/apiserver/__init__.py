"""Lab API server: a Kubernetes REST API stand-in that the official client and kubectl use."""
