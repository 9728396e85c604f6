#!/usr/bin/env bash
# Starts the data-parallel ranks of one machine, as torchrun does: each gets RANK, LOCAL_RANK,
# WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and its output lines are prefixed
# with "[rank R]". When a rank fails, the others are stopped (SIGTERM, then SIGKILL after 30 s)
# and the script exits with the failing rank's status. Ctrl-C is passed to every rank, which
# write a checkpoint and stop together.
#
#   scripts/launch.sh --nproc 2 -- build/seqgan train-tokenizer --preset fmnist
#
# Several machines: run it on each with the same --nnodes, --master-addr (a machine every node
# can reach; node 0 listens there) and --master-port, and its own --node-rank:
#
#   node 0: scripts/launch.sh --nnodes 2 --node-rank 0 --nproc 8 --master-addr 10.0.0.1 -- CMD
#   node 1: scripts/launch.sh --nnodes 2 --node-rank 1 --nproc 8 --master-addr 10.0.0.1 -- CMD
set -uo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --nproc N (ranks on this machine; default 1), --nnodes N (default 1), --node-rank R (default 0),"
  echo "         --master-addr HOST (default 127.0.0.1), --master-port PORT (default 29500)"
  exit "${1:-2}"
}

nproc=1 nnodes=1 node_rank=0 master_addr=127.0.0.1 master_port=29500
while (($#)); do
  case "$1" in
    --nproc) nproc="$2"; shift 2 ;;
    --nnodes) nnodes="$2"; shift 2 ;;
    --node-rank) node_rank="$2"; shift 2 ;;
    --master-addr) master_addr="$2"; shift 2 ;;
    --master-port) master_port="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown option '$1' (the command goes after --)" >&2; usage ;;
  esac
done
(($#)) || { echo "launch.sh: no command given after --" >&2; usage; }
for v in nproc nnodes node_rank master_port; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "launch.sh: --${v//_/-} must be a number, got '${!v}'" >&2; exit 2; }
done
((nproc >= 1 && nnodes >= 1 && node_rank < nnodes)) || { echo "launch.sh: need --nproc >= 1, --nnodes >= 1 and --node-rank < --nnodes" >&2; exit 2; }

world=$((nproc * nnodes))
set -m  # each rank in its own process group: a Ctrl-C reaches the ranks once, through the trap below
pids=()
for ((local = 0; local < nproc; ++local)); do
  rank=$((node_rank * nproc + local))
  (
    # INT and TERM reach the rank with their default action (seqgan's training commands then
    # write a checkpoint and stop); this subshell outlives them to report the rank's status, and
    # sed ignores them to pass on the rank's last lines.
    trap ':' INT TERM
    export RANK=$rank LOCAL_RANK=$local WORLD_SIZE=$world LOCAL_WORLD_SIZE=$nproc \
      MASTER_ADDR=$master_addr MASTER_PORT=$master_port
    "$@" 2>&1 | (trap '' INT TERM; exec sed -u "s/^/[rank $rank] /")
    exit "${PIPESTATUS[0]}"
  ) &
  pids+=($!)
done

stop_all() {
  local sig="$1"
  for p in "${pids[@]}"; do kill "-$sig" -- "-$p" 2>/dev/null; done
}
# Stopped by a signal, the launcher passes it on (the ranks write their checkpoints) and then
# exits 128 + the signal, as the ranks do: a stopped run is not a finished one.
signalled=0
trap 'signalled=130; stop_all INT' INT
trap 'signalled=143; stop_all TERM' TERM

status=0 killer=""
remaining=${#pids[@]}
while ((remaining > 0)); do
  wait -n -p done_pid "${pids[@]}" 2>/dev/null
  rc=$?
  [ -n "${done_pid:-}" ] || continue  # woken by a trapped signal
  remaining=$((remaining - 1))
  if ((rc != 0 && status == 0 && signalled == 0)); then
    status=$rc
    echo "launch.sh: a rank exited with status $rc; stopping the others" >&2
    stop_all TERM
    ( sleep 30; stop_all KILL ) </dev/null >/dev/null 2>&1 &
    killer=$!
  fi
  done_pid=""
done
[ -n "${killer:-}" ] && kill "$killer" 2>/dev/null
((signalled != 0)) && exit "$signalled"
exit "$status"
