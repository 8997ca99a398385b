#!/usr/bin/env bash
# A worker VM: the lbd image from the control plane's share (k3s imports tarballs found in its
# images directory when it starts), then the k3s agent joining the server.
#
# Environment (from the Vagrantfile): NODE_IP SERVER_IP K3S_TOKEN K3S_VERSION
set -euo pipefail
: "${NODE_IP:?}" "${SERVER_IP:?}" "${K3S_TOKEN:?}" "${K3S_VERSION:?}"

iface=$(ip -o -4 addr show | awk -v ip="$NODE_IP" '{split($4, a, "/")} a[1] == ip {print $2; exit}')
: "${iface:?no interface has $NODE_IP}"

images=/var/lib/rancher/k3s/agent/images
mkdir -p "$images"
curl -fsS --retry 10 --retry-delay 3 --retry-connrefused \
  -o "$images/lbd-image.tar" "http://${SERVER_IP}:8088/lbd-image.tar"

if ! command -v k3s >/dev/null; then
  curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION="$K3S_VERSION" \
    K3S_URL="https://${SERVER_IP}:6443" K3S_TOKEN="$K3S_TOKEN" sh -s - agent \
    --node-ip "$NODE_IP" --flannel-iface "$iface"
else
  # Re-provisioning: import a newer image into the running agent.
  k3s ctr images import "$images/lbd-image.tar"
fi
echo "$(hostname) joined the cluster at ${SERVER_IP}"
