# Shared by the valgrind_*_test.sh scripts that need a control plane: a
# real system-manager and mosquitto (and the helpers to wait for them).
# Source it after setting B (the release build directory), dir (a scratch
# directory) and pids=() (processes the caller's cleanup kills).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_line FILE TEXT [TRIES of 0.1 s, default 300]
wait_line() {
  for i in $(seq 1 "${3:-300}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timeout waiting for $2 in $1"; tail -40 "$1"; return 1
}

# vg_root: starts the system-manager; sets api, grpc, tok (Admin's token)
# and join (a join token for cluster "vg").
vg_root() {
  OAK_STATE_DIR=$dir/root OAK_API_PORT=0 OAK_GRPC_PORT=0 OAK_BIND=127.0.0.1 OAK_ADMIN_PASSWORD=vg-password \
    "$B/bin/system-manager" >"$dir/root.log" 2>&1 & pids+=($!)
  wait_line "$dir/root.log" "listening"
  api=$(grep -o 'api_port=[0-9]*' "$dir/root.log" | cut -d= -f2)
  grpc=$(grep -o 'grpc_port=[0-9]*' "$dir/root.log" | cut -d= -f2)
  tok=$(curl -sf -X POST 127.0.0.1:$api/api/auth/login -d '{"username":"Admin","password":"vg-password"}' | jq -r .token)
  join=$(curl -sf -X POST -H "Authorization: Bearer $tok" 127.0.0.1:$api/api/clusters/token -d '{"cluster_name":"vg"}' | jq -r .token)
}

# vg_broker: configures and starts mosquitto for the cluster (admin
# password mq-secret); sets mq (its port).
vg_broker() {
  mq=$(free_port)
  OAK_MQTT_ADMIN_PASSWORD=mq-secret "$B/bin/cluster-manager" broker-config "$dir/mq" "$mq" 127.0.0.1 >/dev/null
  /usr/sbin/mosquitto -c "$dir/mq/mosquitto.conf" >"$dir/mq.log" 2>&1 & pids+=($!)
  for i in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/$mq) 2>/dev/null && break; sleep 0.1; done
}

# vg_finish PID NAME: SIGTERM to the process under valgrind, then fails
# (exit 1, with the valgrind log) unless it exited 0: valgrind's
# --error-exitcode turns leaks and memory errors into a non-zero status.
vg_finish() {
  kill -TERM "$1"
  set +e; wait "$1"; local rc=$?; set -e
  grep -E "in use at exit|definitely lost|indirectly lost|All heap blocks|ERROR SUMMARY" "$dir/valgrind.log" || true
  if [ $rc -ne 0 ]; then echo "$2 under valgrind exited $rc"; tail -80 "$dir/valgrind.log"; exit 1; fi
  echo "valgrind: no leaks, no errors"
}
