#!/usr/bin/env bash
# The control-plane VM: k3s server without its own load balancer (servicelb), the lbd image built
# from the checkout and imported into k3s' containerd, deploy/ applied, the membership key, a
# sample pool on the private network, and a share (HTTP, private network only) from which the
# workers fetch the image and the client fetches its kubeconfig.
#
# Environment (from the Vagrantfile): NODE_IP K3S_TOKEN K3S_VERSION LBD_POOL
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
: "${NODE_IP:?}" "${K3S_TOKEN:?}" "${K3S_VERSION:?}" "${LBD_POOL:?}"

SRC=/lbd
SHARE=/srv/lbd-share
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/pyproject.toml")
IMAGE="lbd:${VERSION}"
iface=$(ip -o -4 addr show | awk -v ip="$NODE_IP" '{split($4, a, "/")} a[1] == ip {print $2; exit}')
: "${iface:?no interface has $NODE_IP}"

# 1. k3s. --disable servicelb: lbd handles LoadBalancer Services; --disable traefik: not needed.
# kube-proxy runs in iptables mode (k3s' default), which needs no strictARP.
if ! command -v k3s >/dev/null; then
  curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION="$K3S_VERSION" K3S_TOKEN="$K3S_TOKEN" sh -s - server \
    --disable servicelb --disable traefik \
    --node-ip "$NODE_IP" --advertise-address "$NODE_IP" --flannel-iface "$iface" \
    --write-kubeconfig-mode 0644
fi
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
deadline=$((SECONDS + 300))
until kubectl get --raw /readyz >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "k3s API not ready after 300 s" >&2; exit 1; }
  sleep 2
done

# 2. The image, built from this checkout (BuildKit reads deploy/Dockerfile.dockerignore).
apt-get install -y -q --no-install-recommends docker.io
mkdir -p "$SHARE"
DOCKER_BUILDKIT=1 docker build -f "$SRC/deploy/Dockerfile" -t "$IMAGE" "$SRC"
docker save "$IMAGE" -o "$SHARE/lbd-image.tar"
k3s ctr images import "$SHARE/lbd-image.tar"

# 3. The share: the image for the workers, a kubeconfig for the client (lab network only).
sed "s#https://127.0.0.1:6443#https://${NODE_IP}:6443#" /etc/rancher/k3s/k3s.yaml >"$SHARE/kubeconfig"
chmod 0644 "$SHARE"/*
if ! systemctl is-active --quiet lbd-share; then
  systemd-run --unit=lbd-share --property=Restart=always \
    python3 -m http.server 8088 --bind "$NODE_IP" --directory "$SHARE"
fi

# 4. lbd itself, its membership key (once), and the sample pool.
kubectl apply -k "$SRC/deploy/"
if ! kubectl -n lbd-system get secret lbd-memberlist >/dev/null 2>&1; then
  kubectl -n lbd-system create secret generic lbd-memberlist \
    --from-literal=key="$(head -c 32 /dev/urandom | base64)"
fi
kubectl wait --for=condition=Established --timeout=60s \
  crd/ipaddresspools.lbd.io crd/l2advertisements.lbd.io crd/servicel2statuses.lbd.io
kubectl apply -f - <<POOL
apiVersion: lbd.io/v1beta1
kind: IPAddressPool
metadata:
  name: vagrant
spec:
  addresses:
    - ${LBD_POOL}
---
# Workers only: the failover drill cuts the owner off the network, and cutting the control plane
# would also cut the drill's access to the API.
apiVersion: lbd.io/v1beta1
kind: L2Advertisement
metadata:
  name: vagrant
spec:
  ipAddressPools:
    - vagrant
  nodeSelectors:
    - matchExpressions:
        - key: node-role.kubernetes.io/control-plane
          operator: DoesNotExist
POOL
kubectl -n lbd-system rollout status deployment/lbd-controller --timeout=300s
echo "lbd is installed; pool ${LBD_POOL}. Workers join next."
