#!/usr/bin/env bash
# Every VM: base packages, no swap (kubelet), and sysctls for a node on a shared L2 segment.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates curl iproute2 jq iputils-ping

swapoff -a
sed -i '/\sswap\s/ s/^#*/#/' /etc/fstab

# Only the owner of an address answers ARP for it: a node must not answer for addresses it holds
# on other interfaces (kube-proxy IPVS puts every Service address on kube-ipvs0).
cat >/etc/sysctl.d/90-lbd-lab.conf <<'SYSCTL'
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.all.arp_announce = 2
SYSCTL
sysctl --system >/dev/null
