#!/usr/bin/env bash
# The client VM: outside the cluster, on the same segment. kubectl with the control plane's
# kubeconfig, and the smoke/failover drill installed as `lbd-smoke`.
#
# Environment (from the Vagrantfile): SERVER_IP K3S_VERSION
set -euo pipefail
: "${SERVER_IP:?}" "${K3S_VERSION:?}"

kubectl_version=${K3S_VERSION%%+*}   # v1.30.6+k3s1 -> v1.30.6: same minor as the server
arch=$(dpkg --print-architecture)
if ! command -v kubectl >/dev/null; then
  base="https://dl.k8s.io/release/${kubectl_version}/bin/linux/${arch}"
  curl -fsSLo /tmp/kubectl "$base/kubectl"
  echo "$(curl -fsSL "$base/kubectl.sha256")  /tmp/kubectl" | sha256sum --check --quiet
  install -m 0755 /tmp/kubectl /usr/local/bin/kubectl
fi
install -d -o vagrant -g vagrant /home/vagrant/.kube
curl -fsS --retry 10 --retry-delay 3 --retry-connrefused \
  -o /home/vagrant/.kube/config "http://${SERVER_IP}:8088/kubeconfig"
chown vagrant:vagrant /home/vagrant/.kube/config
chmod 0600 /home/vagrant/.kube/config
install -m 0755 /lbd/vagrant/scripts/smoke.sh /usr/local/bin/lbd-smoke
sudo -u vagrant kubectl get nodes -o wide
echo "client ready: vagrant ssh client -c lbd-smoke"
