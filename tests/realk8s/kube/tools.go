//go:build tools

// Package tools pins k8s.io/kubernetes (and, through the replace lines in go.mod, every staging
// module at its published version) for `make k8s` (tests/realk8s/build.sh), which builds these
// four commands from this module. Nothing imports it.
//
// Why a wrapper module: k8s.io/kubernetes requires its staging modules at the non-existent
// v0.0.0 and replaces them with ./staging/..., so `go install ...@v1.36.3` refuses it. The main
// module's replace lines are the only ones that apply, so this module maps each staging module
// to its published v0.36.3 instead (tests/realk8s/README.md tells how go.mod was made).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
