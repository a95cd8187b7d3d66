#!/usr/bin/env bash
# The local default: a local control plane (kube-apiserver + etcd + GC and namespace
# controllers), a moto server on 127.0.0.1, tether's CRDs and the example
# ProviderConfig, the examples (a database and an instance), then `tether run` in the
# foreground. Ctrl-C stops everything: the control plane and moto hold a pipe to this
# script and exit when it goes away.
#
# Environment: TETHER_DEV_MOTO_PORT (default 5000), TETHER_DEV_ADMIN_PORT (8080),
# TETHER_CACHE (~/.cache/tether), TETHER_DEV_DIR (.dev), TETHER_BIN (a tether binary
# to run instead of building one with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${TETHER_CACHE:-$HOME/.cache/tether}
state=${TETHER_DEV_DIR:-$PWD/.dev}
moto_port=${TETHER_DEV_MOTO_PORT:-5000}
admin_port=${TETHER_DEV_ADMIN_PORT:-8080}
control_plane=$cache/bin/tether-control-plane
venv=$cache/venv-moto

for needed in "$control_plane" "$venv/bin/moto_server"; do
  [[ -x $needed ]] || { echo "missing $needed: run 'make setup' first" >&2; exit 1; }
done
command -v kubectl >/dev/null || { echo "kubectl is needed on PATH (apt-get install kubectl or see kubernetes.io)" >&2; exit 1; }

if [[ -n ${TETHER_BIN:-} ]]; then
  tether_bin=$TETHER_BIN
else
  echo "building tether (cargo build; a first build compiles the AWS SDK and kube crates: several minutes)"
  cargo build --locked
  tether_bin=${CARGO_TARGET_DIR:-target}/debug/tether
fi

rm -rf "$state" && mkdir -p "$state"
export KUBECONFIG=$state/kubeconfig

echo "starting the control plane (data in $state/control-plane)"
exec {control_plane_pipe}> >(exec "$control_plane" --data-dir "$state/control-plane" \
  --kubeconfig "$KUBECONFIG" --exit-with-stdin >"$state/control-plane.out" 2>"$state/control-plane.log")
echo "starting moto on 127.0.0.1:$moto_port (log: $state/moto.log)"
exec {moto_pipe}> >(exec "$venv/bin/python" tests/testkit/supervise.py "$state/moto.log" \
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port")

for _ in $(seq 600); do
  grep -q '^ready ' "$state/control-plane.out" 2>/dev/null && break
  sleep 0.1
done
grep '^ready ' "$state/control-plane.out" || { echo "the control plane did not start; see $state/control-plane.log" >&2; exit 1; }
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$moto_port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$moto_port/moto-api/" >/dev/null || { echo "moto did not start; see $state/moto.log" >&2; exit 1; }
# Fixed ids: seed moto's random generator, then have it build us-east-1's default VPC
# at once, so the subnet ids in examples/db-subnet-group-local.yaml exist.
curl -fsS -X POST "http://127.0.0.1:$moto_port/moto-api/seed?a=42" >/dev/null
curl -fsS "http://127.0.0.1:$moto_port/?Action=DescribeSubnets&Version=2016-11-15" \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0" >/dev/null

kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established --timeout=60s $(ls crds/*.yaml | grep -v '^crds/validating-admission-policy\.' | sed 's/^/-f /')
sed "s|http://127.0.0.1:5000|http://127.0.0.1:$moto_port|" examples/provider-config-local.yaml | kubectl apply --server-side -f -

kubectl apply --server-side -f examples/db-subnet-group-local.yaml -f examples/db-instance-local.yaml \
  -f examples/security-group-local.yaml -f examples/instance-local.yaml

echo "starting tether (log: $state/tether.log)"
exec {tether_pipe}> >(exec "$tether_bin" run \
  --admin-addr "127.0.0.1:$admin_port" --kubeconfig "$KUBECONFIG" 2>"$state/tether.log")
kubectl wait --for=condition=Ready --timeout=120s dbsubnetgroup/orders-subnets dbinstance/orders \
  securitygroup/web instance.ec2.tether.dev/web-1
kubectl get dbsubnetgroups,dbinstances,securitygroups,instances.ec2.tether.dev
for secret in orders-db web-1-ssh; do
  echo "Secret $secret holds: $(kubectl get secret $secret -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}')"
done

cat <<EOT

The database and the instance are Ready and their Secrets are there. In another shell:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe dbinstance orders
  kubectl get secret orders-db -o jsonpath='{.data.uri}' | base64 -d
  kubectl describe instance.ec2.tether.dev web-1
  kubectl get secret web-1-ssh -o jsonpath='{.data.ssh-privatekey}' | base64 -d
  curl http://127.0.0.1:$admin_port/healthz
Ctrl-C stops tether, the control plane and moto.

EOT
tail -f "$state/tether.log"
: "$control_plane_pipe" "$moto_pipe" "$tether_pipe" # held open until here
