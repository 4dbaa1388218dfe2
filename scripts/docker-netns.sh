#!/usr/bin/env bash
# A real Docker engine beside Podman, in a network namespace of its own, for the gate's Docker runs.
#
#   docker-netns.sh start   install docker.io if missing, start dockerd (idempotent); prints the
#                           two ways to reach it (local socket inside the namespace, TCP from here)
#   docker-netns.sh stop    stop that dockerd and remove its namespace, veth pair and NAT rules
#   docker-netns.sh env     print DOCKER_HOST for the TCP client view (a remote engine, as docker:dind)
#
# Guarantees: Docker's bridges, iptables rules and subnets live in the namespace `aidb-dk`, so they
# never meet Podman's; its socket, data root and exec root are its own (/run/aidb-dk, /var/lib/aidb-dk).
# `start` returns only once the engine answers /_ping (or fails with the tail of dockerd's log).
# dockerd runs under `nsenter --net`, not `ip netns exec`: the latter remounts /sys, and dockerd then
# stops with "Devices cgroup isn't mounted". Root only: namespaces and iptables need it.
set -euo pipefail

NS=aidb-dk
RUN=/run/aidb-dk
DATA=/var/lib/aidb-dk
HOST_IP=10.250.0.1
NS_IP=10.250.0.2
SOCK="$RUN/docker.sock"
LOG="$RUN/dockerd.log"
say() { echo "[aidb-gate] $*"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "docker-netns.sh makes a network namespace and iptables rules, which needs root; run it as root." >&2
    exit 1
  fi
}

ping_ok() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

start() {
  need_root
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io with apt-get (about a minute)"
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } >"$log" 2>&1; then
      tail -n 20 "$log" >&2; rm -f "$log"; exit 1
    fi
    rm -f "$log"
  fi
  mkdir -p "$RUN" "$DATA"
  if ping_ok; then say "docker: already running in namespace $NS ($SOCK, tcp://$NS_IP:2375)"; return 0; fi
  if ! ip netns list | grep -qw "$NS"; then
    ip netns add "$NS"
    ip link add vdk0 type veth peer name vdk1
    ip link set vdk1 netns "$NS"
    ip addr add "$HOST_IP/30" dev vdk0
    ip link set vdk0 up
    nsenter --net="/run/netns/$NS" sh -c "ip addr add $NS_IP/30 dev vdk1; ip link set vdk1 up; ip link set lo up;
                                          ip route add default via $HOST_IP"
  fi
  sysctl -qw net.ipv4.ip_forward=1
  iptables -t nat -C POSTROUTING -s "$HOST_IP/30" -j MASQUERADE 2>/dev/null \
    || iptables -t nat -A POSTROUTING -s "$HOST_IP/30" -j MASQUERADE
  for dir in -i -o; do
    iptables -C FORWARD "$dir" vdk0 -j ACCEPT 2>/dev/null || iptables -I FORWARD "$dir" vdk0 -j ACCEPT
  done
  # setsid: dockerd outlives this script (and make), in a session of its own.
  setsid nsenter --net="/run/netns/$NS" dockerd --host "unix://$SOCK" --host "tcp://$NS_IP:2375" \
    --data-root "$DATA" --exec-root "$RUN/exec" --pidfile "$RUN/docker.pid" >"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    if ping_ok; then
      say "docker: $(dockerd --version) in namespace $NS: local socket $SOCK (inside the namespace), tcp://$NS_IP:2375 from here"
      return 0
    fi
    sleep 0.5
  done
  echo "dockerd did not answer on $SOCK within 60 s; the end of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
}

stop() {
  need_root
  if [ -f "$RUN/docker.pid" ]; then
    pid=$(cat "$RUN/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  iptables -t nat -D POSTROUTING -s "$HOST_IP/30" -j MASQUERADE 2>/dev/null || true
  for dir in -i -o; do iptables -D FORWARD "$dir" vdk0 -j ACCEPT 2>/dev/null || true; done
  ip link del vdk0 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  say "docker: stopped; namespace $NS removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "DOCKER_HOST=tcp://$NS_IP:2375" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
