#!/usr/bin/env bash
# The local default: a local control plane (kube-apiserver + etcd + GC and namespace
# controllers), a moto server on 127.0.0.1 with the data plane in front of it (the
# testkit's `tether-data-plane`: a real PostgreSQL server for each postgres DB
# instance and a MariaDB server for each mysql or mariadb one, so that the database's
# Secret connects), tether's CRDs and the example
# ProviderConfig pointing at the data plane, the examples (a database and an
# instance), then `tether run`, whose log it follows.
#
# Ctrl-C (or SIGTERM, SIGHUP, an error) stops every server before this script exits.
# Each server runs in a process group of its own, so Ctrl-C reaches this script and
# not them; the exit trap sends SIGTERM to their groups, waits for them, and sends
# SIGKILL to a group still there 8 s later. Should this script be killed outright,
# each server also holds a pipe from it and stops when that closes.
#
# Environment: TETHER_DEV_MOTO_PORT (default 5000), TETHER_DEV_AWS_PORT (the data
# plane, which tether calls: 5001), TETHER_DEV_ADMIN_PORT (8080), TETHER_CACHE
# (~/.cache/tether), TETHER_DEV_DIR (.dev), TETHER_BIN and TETHER_DATA_PLANE_BIN (a
# tether and a tether-data-plane binary to run instead of building them with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${TETHER_CACHE:-$HOME/.cache/tether}
state=${TETHER_DEV_DIR:-$PWD/.dev}
moto_port=${TETHER_DEV_MOTO_PORT:-5000}
aws_port=${TETHER_DEV_AWS_PORT:-5001}
admin_port=${TETHER_DEV_ADMIN_PORT:-8080}
control_plane=$cache/bin/tether-control-plane
venv=$cache/venv-moto

for needed in "$control_plane" "$venv/bin/moto_server"; do
  [[ -x $needed ]] || { echo "missing $needed: run 'make setup' first" >&2; exit 1; }
done
for needed in kubectl setsid; do
  command -v $needed >/dev/null || { echo "$needed is needed on PATH (kubectl: apt-get install kubectl or see kubernetes.io; setsid: util-linux)" >&2; exit 1; }
done
for needed in initdb postgres psql; do
  command -v $needed >/dev/null || { echo "PostgreSQL 15's $needed is needed on PATH for the database's data plane (Debian: apt-get install postgresql-15, then add /usr/lib/postgresql/15/bin to PATH)" >&2; exit 1; }
done

# A server that already answers on one of our ports (often one an earlier run left
# behind) would answer in place of this run's: refuse to start, naming it.
refuse_if_taken() { # PORT WHAT VARIABLE
  local port=$1 what=$2 variable=$3 pid holder="another process"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 0
  pid=$( { ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2
    lsof -t -sTCP:LISTEN -iTCP:"$port"; } 2>/dev/null | head -1) || true
  if [[ -n $pid ]]; then
    holder="process $pid ($(ps -o args= -p "$pid" | cut -c1-120))"
  fi
  echo "the $what port 127.0.0.1:$port is taken by $holder." >&2
  echo "Is a server of an earlier 'make dev' still running? Stop it, or choose another port with $variable." >&2
  exit 1
}
refuse_if_taken "$moto_port" moto TETHER_DEV_MOTO_PORT
refuse_if_taken "$aws_port" "data plane" TETHER_DEV_AWS_PORT
refuse_if_taken "$admin_port" "tether admin" TETHER_DEV_ADMIN_PORT
if [[ -e $state/control-plane/lock ]] && ! flock -n "$state/control-plane/lock" true; then
  echo "a control plane still runs on $state/control-plane (process $(fuser "$state/control-plane/lock" 2>/dev/null | tr -s ' ' || echo '?')):" >&2
  echo "stop it, or choose another directory with TETHER_DEV_DIR." >&2
  exit 1
fi

# --workspace: tether and the testkit's data plane in one build, whose dependencies
# have the features of the test build's (scripts/check-one-build.sh).
built=${CARGO_TARGET_DIR:-target}/debug
if [[ -z ${TETHER_BIN:-} ]]; then
  echo "building tether and its data plane (cargo build; a first build compiles the AWS SDK and kube crates: several minutes)"
  cargo build --locked --workspace --bin tether --bin tether-data-plane
elif [[ -z ${TETHER_DATA_PLANE_BIN:-} ]]; then
  echo "building the data plane (cargo build)"
  cargo build --locked --workspace --bin tether-data-plane
fi
tether_bin=${TETHER_BIN:-$built/tether}
data_plane_bin=${TETHER_DATA_PLANE_BIN:-$built/tether-data-plane}

rm -rf "$state" && mkdir -p "$state"
export KUBECONFIG=$state/kubeconfig

# The process groups of this script's descendants, but its own: the servers, and the
# groups they made themselves (supervise.py puts its command in one of its own).
server_groups() {
  local own
  own=$(ps -o pgid= -p $$ | tr -d ' ')
  ps -eo pid=,ppid=,pgid= | awk -v root=$$ -v own="$own" '
    { parent[$1] = $2; group[$1] = $3 }
    END {
      for (pid in parent) {
        for (up = parent[pid]; up in parent && up != root; up = parent[up]) {}
        if (up == root && group[pid] != own) print group[pid]
      }
    }' | sort -u
}

stop_servers() {
  trap '' INT TERM HUP # a second Ctrl-C must not cut the wait short
  local groups group alive deadline=$((SECONDS + 8))
  if [[ -n ${waiting_for:-} ]]; then
    # SIGKILL, not SIGTERM: a command `run` has only just forked can lose a SIGTERM
    # (the subshell takes it with this script's handler, then resets its handlers and
    # execs). The commands `run` runs (kubectl wait, tail) have nothing to clean up.
    # No `wait` for it here: bash 5.2, in a trap that interrupted `wait` for the same
    # pid, sometimes waits for any child instead, and so for the servers, for ever
    # (about 1 Ctrl-C in 100 right after the examples were Ready). A SIGKILL needs no
    # waiting for; its zombie goes with this script.
    kill -KILL "$waiting_for" 2>/dev/null || true
  fi
  groups=$(server_groups)
  [[ -n $groups ]] || return 0
  echo "stopping tether, the control plane, moto and the data plane..." >&2
  for group in $groups; do kill -TERM -- "-$group" 2>/dev/null || true; done
  while :; do
    alive=""
    for group in $groups; do
      if kill -0 -- "-$group" 2>/dev/null; then alive+=" $group"; fi
    done
    [[ -n $alive ]] || break
    if ((SECONDS >= deadline)); then
      for group in $alive; do
        echo "killing process group $group, still there 8 s after SIGTERM: $(ps -eo pgid=,args= | awk -v g="$group" '$1 == g { $1 = ""; print; exit }' | cut -c2-120)" >&2
        kill -KILL -- "-$group" 2>/dev/null || true
      done
      break
    fi
    sleep 0.1
  done
  echo "stopped" >&2
}
# After a signal, stop the servers, then die of that signal, so that make (and the
# shell) see an interrupted command.
stop_and_die() { # SIGNAL
  stop_servers
  trap - "$1" EXIT
  kill -"$1" $$
}
trap stop_servers EXIT
trap 'stop_and_die INT' INT
trap 'stop_and_die TERM' TERM
trap 'stop_and_die HUP' HUP

pipes=()       # this script's end of each server's pipe
waiting_for="" # the command `run` waits for
# start STDOUT STDERR COMMAND...: runs COMMAND in a session (and so a process group)
# of its own, with a pipe from this script on its standard input.
start() {
  local out=$1 err=$2 pipe
  shift 2
  exec {pipe}> >(
    # No server holds another's pipe open, or that one would outlive this script.
    for other in "${pipes[@]}"; do exec {other}>&-; done
    exec setsid "$@" >>"$out" 2>>"$err"
  )
  pipes+=("$pipe")
}

# run COMMAND...: runs COMMAND (kubectl wait, tail: commands that take long) without
# the servers' pipes, and waits for it. bash runs a trap only once the command in the
# foreground has ended; it runs one at once during `wait`.
run() {
  (
    for other in "${pipes[@]}"; do exec {other}>&-; done
    exec "$@"
  ) &
  waiting_for=$!
  wait "$waiting_for"
  waiting_for=""
}

echo "starting the control plane (data in $state/control-plane, log: $state/control-plane.log)"
start "$state/control-plane.out" "$state/control-plane.log" \
  "$control_plane" --data-dir "$state/control-plane" --kubeconfig "$KUBECONFIG" --exit-with-stdin
echo "starting moto on 127.0.0.1:$moto_port (log: $state/moto.log)"
start "$state/moto.log" "$state/moto.log" "$venv/bin/python" tests/testkit/supervise.py \
  "$state/moto.log" "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port"

for _ in $(seq 600); do
  grep -q '^ready ' "$state/control-plane.out" 2>/dev/null && break
  sleep 0.1
done
grep '^ready ' "$state/control-plane.out" || { echo "the control plane did not start; see $state/control-plane.log" >&2; exit 1; }
for _ in $(seq 300); do
  curl -fsS --max-time 2 "http://127.0.0.1:$moto_port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 2 "http://127.0.0.1:$moto_port/moto-api/" >/dev/null || { echo "moto did not start; see $state/moto.log" >&2; exit 1; }
# Fixed ids: seed moto's random generator, then have it build us-east-1's default VPC
# at once, so the subnet ids in examples/db-subnet-group-local.yaml exist.
curl -fsS -X POST "http://127.0.0.1:$moto_port/moto-api/seed?a=42" >/dev/null
curl -fsS "http://127.0.0.1:$moto_port/?Action=DescribeSubnets&Version=2016-11-15" \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0" >/dev/null

# tether calls AWS through the data plane, which passes every call on to moto and
# starts a PostgreSQL server for each postgres database created and a MariaDB server
# for each mysql or mariadb one (its logs: in
# $state/data-plane/).
echo "starting the data plane on 127.0.0.1:$aws_port, in front of moto (log: $state/data-plane.log)"
start "$state/data-plane.log" "$state/data-plane.log" env TETHER_TESTKIT_LOG_DIR="$state/data-plane" \
  "$data_plane_bin" --port "$aws_port" --upstream "http://127.0.0.1:$moto_port"
for _ in $(seq 100); do
  curl -fsS --max-time 2 "http://127.0.0.1:$aws_port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 2 "http://127.0.0.1:$aws_port/moto-api/" >/dev/null || { echo "the data plane did not start; see $state/data-plane.log:" >&2; tail -5 "$state/data-plane.log" >&2; exit 1; }

kubectl apply --server-side -f crds/
run kubectl wait --for=condition=Established --timeout=60s $(ls crds/*.yaml | grep -v '^crds/validating-admission-policy\.' | sed 's/^/-f /')
sed "s|http://127.0.0.1:5001|http://127.0.0.1:$aws_port|" examples/provider-config-local.yaml | kubectl apply --server-side -f -

kubectl apply --server-side -f examples/db-subnet-group-local.yaml -f examples/db-instance-local.yaml \
  -f examples/security-group-local.yaml -f examples/instance-local.yaml

echo "starting tether (log: $state/tether.log)"
# supervise.py stops tether when this script's pipe closes, as the others stop.
start "$state/tether.log" "$state/tether.log" "$venv/bin/python" tests/testkit/supervise.py \
  "$state/tether.log" "$tether_bin" run --admin-addr "127.0.0.1:$admin_port" --kubeconfig "$KUBECONFIG"
run kubectl wait --for=condition=Ready --timeout=120s dbsubnetgroup/orders-subnets dbinstance/orders \
  securitygroup/web instance.ec2.tether.dev/web-1
kubectl get dbsubnetgroups,dbinstances,securitygroups,instances.ec2.tether.dev
for secret in orders-db web-1-ssh; do
  echo "Secret $secret holds: $(kubectl get secret $secret -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}')"
done
# The database's server starts in the background once RDS has the instance: wait
# until the Secret connects, as the command printed below does.
connects() {
  PGCONNECT_TIMEOUT=5 psql "$(kubectl get secret orders-db -o jsonpath='{.data.uri}' | base64 -d)" \
    --no-psqlrc --tuples-only --command 'select 1' >/dev/null 2>"$state/psql.err"
}
for _ in $(seq 120); do
  connects && break
  sleep 0.5
done
connects || { echo "the Secret orders-db does not connect: $(cat "$state/psql.err"); see $state/data-plane.log and $state/data-plane/" >&2; exit 1; }

cat <<EOT

The database and the instance are Ready and their Secrets are there. In another shell:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe dbinstance orders
  psql "\$(kubectl get secret orders-db -o jsonpath='{.data.uri}' | base64 -d)" -c 'select current_user, current_database()'
  kubectl describe instance.ec2.tether.dev web-1
  kubectl get secret web-1-ssh -o jsonpath='{.data.ssh-privatekey}' | base64 -d
  curl http://127.0.0.1:$admin_port/healthz
Ctrl-C stops tether, the control plane, moto and the data plane.

EOT
run tail -f --pid=$$ "$state/tether.log"
