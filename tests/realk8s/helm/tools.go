//go:build tools

// Package helm pins the real Helm CLI for lbd's chart tests. Nothing here is compiled into lbd:
// `make helm` builds helm.sh/helm/v3/cmd/helm from the versions go.mod and go.sum pin, through
// the Go module proxy, into .k8s/helm-<version>/bin/helm (see the Makefile).
package helm

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
