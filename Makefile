# One entry point for people and CI. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint unit demo bench clean install k8s k8s-assets

# The real Kubernetes components (etcd, kube-apiserver, kube-controller-manager, kube-proxy,
# kubectl) that the tests run against, built from the Go modules pinned in tests/realk8s/ into a
# git-ignored folder named after their versions. KUBEBUILDER_ASSETS (envtest's convention), when
# set, names a folder with your own binaries: it is used as it is and nothing is built.
k8s_pin = $(shell awk '($$1 == "require" && $$2 == "$(2)") || $$1 == "$(2)" { print ($$1 == "$(2)" ? $$2 : $$3); exit }' tests/realk8s/$(1)/go.mod)
K8S_VERSION  := $(call k8s_pin,kube,k8s.io/kubernetes)
ETCD_VERSION := $(call k8s_pin,etcd,go.etcd.io/etcd/server/v3)
K8S_ASSETS   := $(CURDIR)/.k8s/$(K8S_VERSION)-etcd$(ETCD_VERSION:v%=%)/bin
K8S_BINARIES := etcd kube-apiserver kube-controller-manager kube-proxy kubectl
K8S_REQUIRED := etcd kube-apiserver kube-controller-manager

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check lbd tests
	$(BIN)/ruff format --check lbd tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	.ci/static-checks

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/lbd lab demo

bench: $(STAMP)
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

k8s:
ifdef KUBEBUILDER_ASSETS
	@for b in $(K8S_REQUIRED); do test -x "$(KUBEBUILDER_ASSETS)/$$b" || \
	  { echo "k8s: KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) has no executable $$b" >&2; exit 1; }; done
	@for b in $(filter-out $(K8S_REQUIRED),$(K8S_BINARIES)); do test -x "$(KUBEBUILDER_ASSETS)/$$b" || \
	  echo "k8s: KUBEBUILDER_ASSETS has no $$b (only the lab needs it)"; done
	@echo "k8s: using KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) (nothing built)"
else
	@tests/realk8s/build.sh $(K8S_ASSETS)
endif

# Last line: the folder holding the binaries (for KUBEBUILDER_ASSETS=$$(make -s k8s-assets)).
k8s-assets: k8s
	@echo $(or $(KUBEBUILDER_ASSETS),$(K8S_ASSETS))

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The real Helm CLI for the chart tests (tests/unit/test_deploy.py), built from its Go module
# through the Go module proxy; the version is the one tests/realk8s/helm/go.mod pins, and the
# binary lands in a git-ignored folder named after it, so a new pin builds anew and `make helm`
# is a no-op when that binary is there. The Go module and build caches are reused when present.
HELM_MOD     := tests/realk8s/helm
HELM_VERSION := $(shell sed -n 's|^require helm.sh/helm/v3 ||p' $(HELM_MOD)/go.mod)
# Helm's own Makefile stamps the Kubernetes version of its client-go into `helm template`'s
# default .Capabilities.KubeVersion (v1.20 otherwise, below the chart's kubeVersion); so do we.
HELM_K8S_MINOR := $(shell sed -n 's|^\tk8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' $(HELM_MOD)/go.mod)
HELM_BIN     := .k8s/helm-$(HELM_VERSION)/bin/helm
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/internal/version.gitTreeState=clean \
	$(foreach p,pkg/lint/rules pkg/chartutil,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 \
	-X helm.sh/helm/v3/$(p).k8sVersionMinor=$(HELM_K8S_MINOR))

.PHONY: helm helm-path
helm: $(HELM_BIN)

$(HELM_BIN):
	mkdir -p $(@D)
	cd $(HELM_MOD) && GOTOOLCHAIN=local CGO_ENABLED=0 \
		go build -trimpath -buildvcs=false -ldflags '$(HELM_LDFLAGS)' -o $(CURDIR)/$@.tmp helm.sh/helm/v3/cmd/helm
	mv $@.tmp $@

helm-path:
	@echo $(CURDIR)/$(HELM_BIN)
