//go:build tools

// Package tools pins etcd's server module for `make k8s` (tests/realk8s/build.sh), which builds
// the etcd binary from its root package (package main). Nothing imports it.
//
// Why a module of its own: built in the Kubernetes wrapper module, etcd's server would raise
// (by minimal version selection) the etcd client that kube-apiserver links above the version
// Kubernetes pins. Why a wrapper at all: the server's go.mod has replace lines, so
// `go install go.etcd.io/etcd/server/v3@v3.6.16` refuses it.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
