#!/usr/bin/env bash
# lbd smoke test and failover drill, run on the client VM (`vagrant ssh client -c lbd-smoke`).
#
# 1. Creates namespace lbd-smoke with an echo server on every worker (a DaemonSet that answers
#    HTTP with its node's name) and a LoadBalancer Service with externalTrafficPolicy: Local, so
#    the node that answers is the node lbd elected.
# 2. Waits for the Service's address, fetches it, and finds the owner node from the Service's
#    ServiceL2Status and from the client's ARP table.
# 3. Cuts the owner off the network (a privileged pod on it takes its lab interface down for
#    LBD_CUT_SECONDS, then brings it back), probes the address every LBD_PROBE_INTERVAL seconds,
#    and reports the interruption: the longest time without an answer, and the new owner.
#
# Settings: LBD_CUT_SECONDS (20), LBD_PROBE_INTERVAL (0.1), LBD_KEEP=1 keeps the namespace.
set -euo pipefail
export KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}
NS=lbd-smoke
CUT_SECONDS=${LBD_CUT_SECONDS:-20}
INTERVAL=${LBD_PROBE_INTERVAL:-0.1}
IMAGE=$(kubectl -n lbd-system get daemonset lbd-speaker -o jsonpath='{.spec.template.spec.containers[0].image}')
log=$(mktemp)

say() { printf '\n== %s\n' "$*"; }
cleanup() {
  rm -f "$log"
  if [[ "${LBD_KEEP:-0}" != 1 ]]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND until it succeeds or the deadline passes.
wait_for() {
  local what=$1 limit=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${limit} s waiting for ${what}" >&2
      return 1
    fi
    sleep 1
  done
}

say "echo server and LoadBalancer Service in namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f - <<YAML
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: echo
spec:
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers:
        - name: echo
          image: ${IMAGE}
          imagePullPolicy: IfNotPresent
          command: [python3, -c]
          args:
            - |
              import http.server, os
              class H(http.server.BaseHTTPRequestHandler):
                  def do_GET(self):
                      body = (os.environ["NODE_NAME"] + "\n").encode()
                      self.send_response(200)
                      self.send_header("Content-Length", str(len(body)))
                      self.end_headers()
                      self.wfile.write(body)
                  def log_message(self, *args):
                      pass
              http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
          env:
            - name: NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          ports: [{containerPort: 8080}]
          readinessProbe:
            tcpSocket: {port: 8080}
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
YAML
kubectl -n "$NS" rollout status daemonset/echo --timeout=180s

vip() { kubectl -n "$NS" get service echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}'; }
has_vip() { [[ -n "$(vip)" ]]; }
wait_for "an address for Service $NS/echo" 60 has_vip
VIP=$(vip)
echo "Service $NS/echo has address $VIP"

answers() { curl -fsS --max-time 1 "http://$VIP/" >/dev/null; }
wait_for "an answer from http://$VIP/" 60 answers
echo "http://$VIP/ answered by node: $(curl -fsS --max-time 1 "http://$VIP/")"

owner() { kubectl -n "$NS" get servicel2status echo -o jsonpath='{.status.node}' 2>/dev/null; }
has_owner() { [[ -n "$(owner)" ]]; }
wait_for "the ServiceL2Status of $NS/echo" 30 has_owner
OWNER=$(owner)
OWNER_IP=$(kubectl get node "$OWNER" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
echo "owner (ServiceL2Status): $OWNER ($OWNER_IP)"
kubectl -n "$NS" get servicel2status echo
ip neigh show "$VIP" | sed 's/^/client ARP table: /'

say "failover drill: cutting $OWNER off the network for ${CUT_SECONDS} s"
# Probe in the background: one line per probe, "<epoch seconds> <answering node or ->".
(
  end=$((SECONDS + CUT_SECONDS + 15))
  while ((SECONDS < end)); do
    node=$(curl -fsS --max-time 0.5 "http://$VIP/" 2>/dev/null || echo -)
    echo "$(date +%s.%N) $node"
    sleep "$INTERVAL"
  done
) >"$log" &
prober=$!
sleep 2   # a baseline of answers from the owner before the cut

kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: cut-${OWNER}
spec:
  nodeName: ${OWNER}
  hostNetwork: true
  restartPolicy: Never
  containers:
    - name: cut
      image: busybox:1.36
      securityContext: {privileged: true}
      command: [sh, -c]
      args:
        - |
          # The interface toward the pool's segment (the VIP is on no interface of the node).
          dev=\$(ip route get ${VIP} | sed -n 's/.* dev \([^ ]*\).*/\1/p')
          ip link set "\$dev" down
          sleep ${CUT_SECONDS}
          ip link set "\$dev" up
YAML
wait "$prober"

say "result"
awk -v owner="$OWNER" '
  $2 != "-" { if (last != "" && $1 - last > gap) { gap = $1 - last; from = lastnode; to = $2 }
              last = $1; lastnode = $2; if ($2 != owner) moved = $2 }
  END {
    if (moved == "") { print "FAIL: the address never moved away from " owner; exit 1 }
    printf "address moved from %s to %s\n", owner, moved
    printf "longest interruption: %.2f s (between answers from %s and %s)\n", gap, from, to
  }' "$log"
kubectl -n "$NS" get servicel2status echo
ip neigh show "$VIP" | sed 's/^/client ARP table: /'
kubectl -n "$NS" delete pod "cut-${OWNER}" --wait=false >/dev/null
