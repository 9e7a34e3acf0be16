#!/bin/bash
# Side by side, as whole commands: `peerbatch get`, `get --no-store` and
# `sendme receive` of one 1 GiB random file on loopback, a fresh receiving
# node (or directory) for each command, the three in a shuffled order in
# each round; prints seconds and MB/s per command. sendme is not part of
# the project: `cargo install sendme`, or set SENDME to its path.
# Usage: side_by_side.sh PATH/TO/peerbatch [ROUNDS]
set -u
PB=$1; ROUNDS=${2:-3}
SENDME=${SENDME:-sendme}
ROOT=${TMPDIR:-/tmp}/peerbatch-side-by-side; rm -rf $ROOT; mkdir -p $ROOT
head -c 1G /dev/urandom > $ROOT/input
start_node() { # dir [token]
  local dir=$1; mkdir -p $dir
  local extra=(); [ -n "${2:-}" ] && extra=(--join-token "$2")
  RUST_LOG=warn $PB node --data-dir $dir --listen /ip4/127.0.0.1/tcp/0 --no-mdns --allow-root-tasks "${extra[@]}" >/dev/null 2>$dir/log &
  echo $! > $dir/pid
  for i in $(seq 300); do [ -f $dir/api ] && [ -f $dir/listen ] && break; sleep 0.1; done
}
stop_node() { kill $(cat $1/pid); wait $(cat $1/pid) 2>/dev/null; }
start_node $ROOT/a
TOKEN=$($PB --data-dir $ROOT/a invite)
ID=$($PB --data-dir $ROOT/a put $ROOT/input)
echo "blob $ID"
cd $ROOT && { $SENDME send --relay disabled --ticket-type addresses --magic-ipv4-addr 127.0.0.1:0 input > $ROOT/sendme.out 2>&1 & SENDER=$!; }; cd /
for i in $(seq 100); do TICKET=$(grep -o 'blob[a-z0-9]\{20,\}' $ROOT/sendme.out | head -1); [ -n "$TICKET" ] && break; sleep 0.2; done
echo "ticket ${TICKET:0:20}..."
for r in $(seq $ROUNDS); do
  for cmd in $(printf "get\nnostore\nsendme\n" | shuf); do
    d=$ROOT/r$r-$cmd; mkdir -p $d/recv
    if [ $cmd = sendme ]; then
      s=$(date +%s.%N); (cd $d/recv && $SENDME receive --relay disabled $TICKET >/dev/null 2>&1); rc=$?; e=$(date +%s.%N); [ -f $d/recv/input ] || rc="$rc, no output" 
    else
      start_node $d/node "$TOKEN"
      for i in $(seq 300); do n=$($PB --data-dir $d/node status --json 2>/dev/null | grep -o '"peers_connected": *[0-9]*' | grep -o '[0-9]*$'); [ "${n:-0}" -ge 1 ] && break; sleep 0.1; done
      flag=""; [ $cmd = nostore ] && flag="--no-store"
      s=$(date +%s.%N); $PB --data-dir $d/node get $flag $ID --out $d/out >/dev/null 2>&1; rc=$?; e=$(date +%s.%N)
      stop_node $d/node
    fi
    secs=$(echo "$e - $s" | bc)
    echo "round $r $cmd $secs s $(echo "1073741824 / $secs / 1000000" | bc) MB/s (exit $rc)"
  done
  rm -rf $ROOT/r$r-*
done
stop_node $ROOT/a
kill $SENDER; wait $SENDER 2>/dev/null
rm -rf $ROOT
