#!/usr/bin/env bash
# Build the real Kubernetes components lbd's tests run against, from their Go modules:
# etcd (tests/realk8s/etcd) and kube-apiserver, kube-controller-manager, kube-proxy, kubectl
# (tests/realk8s/kube). Called by `make k8s`; usage: tests/realk8s/build.sh OUTDIR
#
# Does nothing when OUTDIR/.built already records a build of exactly these wrapper modules with
# this Go toolchain. Otherwise it builds into a fresh folder next to OUTDIR and renames it into
# place, so an interrupted build never leaves a half-filled OUTDIR that looks complete.
# The Go module cache ($GOMODCACHE) and build cache ($GOCACHE) are the toolchain's own: a second
# build on the same machine compiles nothing (only the link step runs if OUTDIR was removed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}

if ! command -v go >/dev/null; then
  echo "k8s: the go command is not on PATH; Go >= 1.26 is needed to build the real components" >&2
  echo "k8s: (or point KUBEBUILDER_ASSETS at a folder holding etcd, kube-apiserver," \
    "kube-controller-manager, kube-proxy and kubectl)" >&2
  exit 1
fi
# The wrapper modules say `go 1.26.0`: never let the go command fetch another toolchain. Static
# binaries, as upstream builds its server binaries; -trimpath for reproducible builds.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

version_of() { # MODULE_DIR MODULE_PATH -> the version the wrapper requires
  awk -v m="$2" '($1 == "require" && $2 == m) || ($1 == m) { print ($1 == m ? $2 : $3); exit }' \
    "$1/go.mod"
}
k8s_version=$(version_of "$here/kube" k8s.io/kubernetes)
etcd_version=$(version_of "$here/etcd" go.etcd.io/etcd/server/v3)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || {
  echo "k8s: cannot read the pinned versions from $here/{kube,etcd}/go.mod" >&2
  exit 1
}

fingerprint=$(
  {
    go version
    echo "$GOFLAGS $CGO_ENABLED"
    cat "$here/build.sh" "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$out/.built" ] && [ "$(cat "$out/.built")" = "$fingerprint" ]; then
  echo "k8s: Kubernetes $k8s_version and etcd $etcd_version are built in $out (nothing to do)"
  exit 0
fi

tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)

# Version stamping, as upstream's hack/lib/version.sh does (both packages): without it
# /version says v0.0.0-master with no major/minor. The module zip carries no commit, so gitCommit
# stays unset; buildDate is the time the proxy gives for the tag, so a rebuild is identical.
k8s_time=$(cd "$here/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8s_time"
done

echo "k8s: building Kubernetes $k8s_version (kube-apiserver, kube-controller-manager," \
  "kube-proxy, kubectl) and etcd $etcd_version into $out"
# -p 2: two compile jobs; more only adds memory pressure on small CI machines.
(
  cd "$here/kube"
  go build -p 2 -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
)
(
  cd "$here/etcd"
  # -o names the binary: the package's import path would name it "v3"
  go build -p 2 -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" \
    -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)

"$tmp/kube-apiserver" --version | grep -qx "Kubernetes $k8s_version" || {
  echo "k8s: kube-apiserver --version says '$("$tmp/kube-apiserver" --version)'," \
    "not 'Kubernetes $k8s_version'" >&2
  exit 1
}
echo "$fingerprint" >"$tmp/.built"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$tmp" "$out"
trap - EXIT
echo "k8s: built in $(($(date +%s) - start)) s: $(cd "$out" && echo *)"
