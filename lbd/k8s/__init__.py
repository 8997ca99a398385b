"""The Kubernetes adapter: the only package that imports the official ``kubernetes`` client."""
