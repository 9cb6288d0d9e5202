#!/usr/bin/env bash
# veil-gateway speed figures for `make bench` (called from scripts/bench.sh),
# each beside a reference measured in the same run.  Never a pass/fail test:
# a step that cannot run prints an "n/a" line and the script goes on.
#
#   scripts/bench_gateway.sh [--build] DIR
#
# Needs DIR/bin/veil-node, DIR/bin/veil-gateway, DIR/bench/gateway_bench
# (make all bench-bins) and $VEIL_SHARED/models/stories260K.gguf; nginx
# (/usr/sbin/nginx) for the reference proxy.  Everything runs on free
# 127.0.0.1 ports and is stopped on exit.  Nodes: stories260K, TLS, --tee
# sim, --allow-plaintext, one inference thread.  Gateways: SQLite store,
# --plain-http, --allow-sim.  nginx: one worker (the gateway runs one event
# loop), https to the nodes without verification, upstream keep-alive, no
# buffering, no access log.  The node side is made as cheap as it goes (a
# one-word prompt, max_tokens 1) so that the proxies' own costs show; each
# request still costs a node ~1 ms (four receipt signatures), so on a small
# machine the nodes bound what any proxy can reach.  Steps (gateway_bench.c
# says how each figure is taken):
#   1. latency the gateway adds: p50 and p99 of small non-streamed chat
#      requests through the gateway against the same requests straight to
#      a node, alternating, one keep-alive connection each; goal: p50 added
#      <= 0.5 ms.  Both paths carry one TLS hop (client -> node, or gateway
#      -> node; the client reaches the gateway in plain HTTP).  The gateway
#      completes an answer only once its usage record is durable, so the
#      disk's fsync is part of what it adds: the same figure is taken again
#      with a second gateway whose store is on tmpfs (/dev/shm);
#   2. requests/s through the gateway and through nginx in front of the
#      same two nodes, same concurrency, alternating, three rounds, best of
#      each; goal ratio >= 1 (and the tmpfs gateway for information); with
#      it the CPU time each proxy process spent per request (median of the
#      rounds): when the nodes and the proxy share a small machine, req/s
#      is bound by the nodes' CPU and the proxy's cost shows there;
#   3. 5000 concurrent SSE streams through the gateway, then through nginx,
#      in front of one node: all must complete; memory per stream = RSS
#      growth / streams open at once (nginx: its worker's).  The node runs
#      with a long context and its decode slots held by "blocker" streams
#      (sent straight to it), so the 5000 wait in its queue with their SSE
#      stream started (role chunk) and are all open at once; then the
#      blockers are dropped and every stream must finish with [DONE].
# Output: BENCH|figure|ours|unit|reference|ratio lines on stdout, progress
# on stderr.  Env: VEIL_SHARED (default ../shared), GW_BENCH_STREAMS
# (5000), GW_BENCH_CONNS (32), GW_BENCH_SECONDS (2 per rps run),
# GW_BENCH_STEPS (all | streams | fast: steps 1 and 2 only), GW_BENCH_KEEP
# (keep the logs).
set -uo pipefail

BUILD=build
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD="$2"; shift 2 ;;
	-h|--help) sed -n '2,41p' "$0"; exit 0 ;;
	-*) echo "bench_gateway: unknown argument $1" >&2; exit 2 ;;
	*) BUILD="$1"; shift ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
NODE="$BUILD/bin/veil-node"
GW="$BUILD/bin/veil-gateway"
GB="$BUILD/bench/gateway_bench"
NGINX="${NGINX:-/usr/sbin/nginx}"
SHARED="${VEIL_SHARED:-$ROOT/../shared}"
MODEL="$SHARED/models/stories260K.gguf"
STREAMS="${GW_BENCH_STREAMS:-5000}"
CONNS="${GW_BENCH_CONNS:-32}"
SECONDS_PER_RUN="${GW_BENCH_SECONDS:-2}"
BLOCKERS=4   # = the nodes' --max-batch: every decode slot held
STEPS="${GW_BENCH_STEPS:-all}"   # all | streams | fast (1 and 2)

say() { echo "bench_gateway: $*" >&2; }
na() { echo "BENCH|$1|n/a|$2|$3|n/a"; }

for f in "$NODE" "$GW" "$GB"; do
	if [ ! -x "$f" ]; then
		say "$f not built (make all bench-bins BUILD=$BUILD)"
		na "veil-gateway benchmarks" "-" "$f not built"
		exit 0
	fi
done
if [ ! -f "$MODEL" ]; then
	say "$MODEL missing (set VEIL_SHARED)"
	na "veil-gateway benchmarks" "-" "no $MODEL"
	exit 0
fi
# Each stream is a socket at the client, two at a proxy and one at a node.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * STREAMS + 500)) ]; then
	STREAMS=$(( ($(ulimit -n) - 500) / 2 ))
	say "ulimit -n is $(ulimit -n): $STREAMS streams only"
fi

tmp="$(mktemp -d)"
shm=""
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	pids=()
	[ -n "$shm" ] && rm -rf "$shm"
	if [ -n "${GW_BENCH_KEEP:-}" ]; then say "logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# wait_port LOG PID : the port of the `listening on http(s)://127.0.0.1:P`
# line (PORT), empty when the process died or never said it.
wait_port() {
	local log="$1" pid="$2"
	PORT=""
	for _ in $(seq 1 300); do
		PORT="$(grep -so 'listening on https\?://127.0.0.1:[0-9]*' "$log" | tail -1 | sed 's/.*://')"
		[ -n "$PORT" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -5 "$log" >&2
	return 1
}

# start_nodes N ARGS... : N veil-nodes (TLS, sim, plaintext allowed, one
# inference thread); sets node_urls and node_pids.
start_nodes() {
	local n="$1" i u; shift
	node_urls=()
	node_pids=()
	for i in $(seq 1 "$n"); do
		"$NODE" --listen 127.0.0.1:0 --tee sim --model "$MODEL" --allow-plaintext --threads 1 \
			--max-conns 12000 --idle-timeout-ms 600000 "$@" >"$tmp/node$i.log" 2>&1 &
		pids+=($!)
		node_pids+=($!)
		if ! wait_port "$tmp/node$i.log" "$!"; then
			say "node $i did not start"
			return 1
		fi
		node_urls+=("https://127.0.0.1:$PORT")
	done
	for u in "${node_urls[@]}"; do
		for _ in $(seq 1 100); do
			[ "$(curl -sk -o /dev/null -w '%{http_code}' "$u/readyz")" = 200 ] && break
			sleep 0.1
		done
	done
	say "nodes: ${node_urls[*]}"
}

BODY='{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"temperature":0}'

# start_gateway [ARGS...] : a gateway on a fresh SQLite store (in DBDIR,
# default $tmp) in front of node_urls, with one API key; sets GW_URL,
# GW_PID, KEY.
start_gateway() {
	local n=$RANDOM u sep="" ok=0
	local db="sqlite:${DBDIR:-$tmp}/gw$n.db"
	GW_LOG="$tmp/gw$n.log"
	{
		printf '['
		for u in "${node_urls[@]}"; do
			printf '%s{"url":"%s","model":"stories260K"}' "$sep" "$u"
			sep=,
		done
		printf ']\n'
	} >"$tmp/nodes.json"
	KEY="$("$GW" keys create --db "$db" --name bench 2>"$tmp/keys.log" | tail -n 1)"
	case "$KEY" in
	sk-veil-*) ;;
	*) say "veil-gateway keys create failed:"; tail -5 "$tmp/keys.log" >&2; return 1 ;;
	esac
	"$GW" --listen 127.0.0.1:0 --db "$db" --nodes "$tmp/nodes.json" --allow-sim --plain-http \
		--max-conns $((STREAMS + 1000)) "$@" >"$GW_LOG" 2>&1 &
	GW_PID=$!
	pids+=($GW_PID)
	if ! wait_port "$GW_LOG" "$GW_PID"; then
		say "veil-gateway did not start"
		return 1
	fi
	GW_URL="http://127.0.0.1:$PORT"
	# ready once the nodes are verified and a request goes through
	for _ in $(seq 1 150); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "$GW_URL/readyz")" = 200 ] &&
			[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
				-H 'Content-Type: application/json' -d "$BODY" \
				"$GW_URL/v1/chat/completions")" = 200 ]; then
			ok=1
			break
		fi
		sleep 0.2
	done
	if [ "$ok" != 1 ]; then
		say "the gateway never answered a request:"; tail -5 "$GW_LOG" >&2
		return 1
	fi
	# every node verified (least-outstanding routing then uses all)
	sleep 1
	say "gateway: $GW_URL (pid $GW_PID)"
}

# start_nginx : nginx in front of node_urls; sets NGINX_URL and
# NGINX_WORKER (empty when it did not start).
start_nginx() {
	local d="$tmp/nginx$RANDOM" nport u
	NGINX_URL=""
	NGINX_WORKER=""
	if [ ! -x "$NGINX" ]; then
		say "no nginx at $NGINX: no reference proxy"
		return 1
	fi
	mkdir -p "$d"
	chmod 755 "$tmp" "$d"
	nport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
	{
		cat <<-EOF
		# the reference reverse proxy: one worker (the gateway runs one
		# event loop), https to the nodes without verification, upstream
		# keep-alive, no buffering (SSE passes as it comes), no access log
		daemon off;
		master_process on;
		worker_processes 1;
		worker_rlimit_nofile 20000;
		pid $d/nginx.pid;
		error_log $d/error.log warn;
		events { worker_connections 16384; }
		http {
		access_log off;
		client_body_temp_path $d/body;
		proxy_temp_path $d/proxy;
		fastcgi_temp_path $d/fastcgi;
		uwsgi_temp_path $d/uwsgi;
		scgi_temp_path $d/scgi;
		keepalive_requests 1000000;
		keepalive_timeout 600s;
		upstream nodes {
		EOF
		for u in "${node_urls[@]}"; do echo "server ${u#https://};"; done
		cat <<-EOF
		keepalive 256;
		keepalive_requests 1000000;
		keepalive_timeout 600s;
		}
		server {
		listen 127.0.0.1:$nport;
		location / {
		proxy_pass https://nodes;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_ssl_verify off;
		proxy_ssl_session_reuse on;
		proxy_buffering off;
		proxy_read_timeout 600s;
		proxy_send_timeout 600s;
		}
		}
		}
		EOF
	} >"$d/nginx.conf"
	"$NGINX" -p "$d" -c "$d/nginx.conf" -e stderr >"$d/out.log" 2>&1 &
	local np=$!
	pids+=($np)
	for _ in $(seq 1 50); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
			-d "$BODY" "http://127.0.0.1:$nport/v1/chat/completions")" = 200 ]; then
			NGINX_URL="http://127.0.0.1:$nport"
			break
		fi
		kill -0 "$np" 2>/dev/null || break
		sleep 0.1
	done
	NGINX_WORKER="$(ps -o pid= --ppid "$np" 2>/dev/null | head -n 1 | tr -d ' ')"
	if [ -z "$NGINX_URL" ] || [ -z "$NGINX_WORKER" ]; then
		say "nginx did not start:"; tail -5 "$d/out.log" "$d/error.log" >&2
		NGINX_URL=""
		return 1
	fi
	say "nginx: $NGINX_URL (worker pid $NGINX_WORKER)"
}

# stop_all : everything started so far (the next phase starts afresh)
stop_all() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	pids=()
}

# run_timed SECONDS CMD... : bounded; stdout kept, stderr to the log
run_timed() {
	local s="$1"; shift
	timeout -k 5 "$s" "$@" 2>>"$tmp/gb.err"
	grep -v '^$' "$tmp/gb.err" | tail -n 8 >&2
	: >"$tmp/gb.err"
}

# ---- 1 + 2: two nodes as they run by default --------------------------------
# A second gateway keeps its store on tmpfs (/dev/shm): the same work
# without waiting for the disk's fsync, so that the gateway's own cost and
# the disk's can be told apart.  The figures with a goal are the first
# gateway's (store on disk, as deployed).
LAT="veil-gateway added latency p50, small non-streamed request (goal <= 0.5 ms)"
RPS="veil-gateway requests/s vs nginx, $CONNS connections, max_tokens 1 (goal ratio >= 1)"
CPU="veil-gateway CPU time per request vs nginx under the requests/s load (all its threads; ratio: ours / nginx's)"
if [ "$STEPS" = streams ]; then
	:
elif start_nodes 2 && start_gateway; then
	GW1_URL="$GW_URL" KEY1="$KEY" GW1_PID="$GW_PID"
	GW2_URL=""
	if [ -d /dev/shm ] && shm="$(mktemp -d /dev/shm/veil-bench.XXXXXX)" &&
		DBDIR="$shm" start_gateway; then
		GW2_URL="$GW_URL" KEY2="$KEY" GW2_PID="$GW_PID"
	fi
	start_nginx

	# ---- 1. latency ----
	say "latency: through the gateway vs straight to a node"
	run_timed 60 "$GB" latency --url "$GW1_URL" --ref-url "${node_urls[0]}" --key "$KEY1" \
		--reps 1000 --warmup 100 --label veil-gateway | grep '^BENCH|' ||
		na "$LAT" ms "the run failed"
	if [ -n "$GW2_URL" ]; then
		say "latency: the gateway with its store on tmpfs vs straight to a node"
		run_timed 60 "$GB" latency --url "$GW2_URL" --ref-url "${node_urls[0]}" --key "$KEY2" \
			--reps 1000 --warmup 100 --label "veil-gateway, store on tmpfs (no fsync wait)" |
			grep '^BENCH|.*added latency p50'
	fi

	# ---- 2. requests/s against nginx ----
	if [ -n "$NGINX_URL" ]; then
		say "requests/s: gateway, nginx${GW2_URL:+, gateway on tmpfs}; $CONNS connections, 3 rounds"
		# one key per gateway: rps sends one --key to all; the tmpfs
		# gateway is measured in its own run
		run_timed 120 "$GB" rps --url "$GW1_URL" --url "$NGINX_URL" --key "$KEY1" \
			--cpu-pid "$GW1_PID" --cpu-pid "$NGINX_WORKER" \
			--conns "$CONNS" --seconds "$SECONDS_PER_RUN" --rounds 3 >"$tmp/rps.txt"
		if [ -n "$GW2_URL" ]; then
			run_timed 60 "$GB" rps --url "$GW2_URL" --key "$KEY2" --conns "$CONNS" \
				--cpu-pid "$GW2_PID" --seconds "$SECONDS_PER_RUN" --rounds 2 |
				sed 's/^rps 0 /rps 2 /' >>"$tmp/rps.txt"
		fi
		awk -v fig="$RPS" -v cfig="$CPU" '
		function median(k,   n, i, j, t, v) {
			n = nc[k]
			for (i = 1; i <= n; i++) v[i] = c[k, i]
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
				if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			if (n == 0) return -1
			return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		}
		$1 == "rps" {
			if ($4 > best[$2]) best[$2] = $4
			if (NF >= 7 && $7 > 0) c[$2, ++nc[$2]] = $7
		}
		END {
			g = best[0] + 0; n = best[1] + 0; t = best[2] + 0
			ts = ""
			if (t > 0) ts = sprintf("; gateway with its store on tmpfs %.0f req/s", t)
			if (g > 0 && n > 0) {
				printf "BENCH|%s|%.0f|req/s|nginx 1.22 (1 worker) %.0f req/s, same nodes (same run, best of 3 each)%s|%.2f\n", fig, g, n, ts, g / n
			} else {
				gs = "n/a"; ns = "n/a"
				if (g > 0) gs = sprintf("%.0f", g)
				if (n > 0) ns = sprintf("%.0f", n)
				printf "BENCH|%s|%s|req/s|nginx %s req/s (every run had failed requests)%s|n/a\n", fig, gs, ns, ts
			}
			cg = median(0); cn = median(1); ct = median(2)
			if (cg > 0 && cn > 0) {
				ts = ""
				if (ct > 0) ts = sprintf("; gateway with its store on tmpfs %.0f us", ct)
				printf "BENCH|%s|%.0f|us|nginx 1.22 (1 worker) %.0f us per request, same run (median of 3 rounds each)%s|%.2f\n", cfig, cg, cn, ts, cg / cn
			} else {
				printf "BENCH|%s|n/a|us|CPU times not read|n/a\n", cfig
			}
		}' "$tmp/rps.txt"
	else
		na "$RPS" "req/s" "nginx did not run"
		na "$CPU" us "nginx did not run"
	fi
else
	na "$LAT" ms "the nodes or the gateway did not start"
	na "$RPS" "req/s" "the nodes or the gateway did not start"
	na "$CPU" us "the nodes or the gateway did not start"
fi
stop_all
[ "$STEPS" = fast ] && exit 0

# ---- 3. many streams ----------------------------------------------------------------
# One node (its engine thread is kept busy by the blockers: one core), a
# context long enough that blockers run until dropped.  (A long context
# makes every request dearer, so steps 1 and 2 use default nodes.)
# The node's one loop thread handshakes thousands of TLS connections while
# its engine is busy: the gateway's connect and health timeouts are raised
# so that a slow handshake in the surge does not take the node out.
if ! start_nodes 1 --max-batch "$BLOCKERS" --ctx 32768 --max-queue 16384 \
	--request-timeout-ms 600000 ||
	! start_gateway --connect-timeout-ms 60000 --health-timeout-ms 30000; then
	na "veil-gateway memory per stream, $STREAMS concurrent SSE streams" KiB \
		"the node or the gateway did not start"
	exit 0
fi
start_nginx
blk=()
for u in "${node_urls[@]}"; do blk+=(--blocker-url "$u"); done
for p in "${node_pids[@]}"; do blk+=(--idle-pid "$p"); done
say "$STREAMS concurrent streams through the gateway"
run_timed 150 "$GB" streams --url "$GW_URL" --key "$KEY" --pid "$GW_PID" --n "$STREAMS" \
	--max-tokens 4 --blockers "$BLOCKERS" "${blk[@]}" --label veil-gateway --timeout 120 \
	>"$tmp/streams-gw.txt"
touch "$tmp/streams-nginx.txt"
if [ -n "$NGINX_URL" ] && [ -n "$NGINX_WORKER" ]; then
	say "$STREAMS concurrent streams through nginx"
	run_timed 150 "$GB" streams --url "$NGINX_URL" --pid "$NGINX_WORKER" --n "$STREAMS" \
		--max-tokens 4 --blockers "$BLOCKERS" "${blk[@]}" --label nginx --timeout 120 \
		>"$tmp/streams-nginx.txt"
fi
# one line: the gateway's memory per stream beside nginx's (ratio: ours /
# nginx's, <= 1 is leaner)
awk -v gwf="$tmp/streams-gw.txt" '
$1 == "streams" {
	ok = ($6 == $4 && $10 > 0)
	k = -1
	if (ok) k = $16
	if (FILENAME == gwf) { gn = $4; gc = $6; gk = k; gb = $12; gp = $14; go = $10 }
	else { nn = $4; nc = $6; nk = k }
}
END {
	if (gn == "") { print "BENCH|veil-gateway memory per stream, concurrent SSE streams|n/a|KiB|the run failed|n/a"; exit }
	fig = "veil-gateway memory per stream, " gn " concurrent SSE streams"
	if (nk > 0) nref = sprintf("nginx %.1f KiB (same run)", nk)
	else if (nn != "") nref = sprintf("nginx n/a (%d of %d complete)", nc, nn)
	else nref = "nginx n/a"
	if (gk < 0) { printf "BENCH|%s|n/a|KiB|%d of %d complete; %s|n/a\n", fig, gc, gn, nref; exit }
	r = "n/a"
	if (nk > 0) r = sprintf("%.2f", gk / nk)
	printf "BENCH|%s (all complete)|%.1f|KiB|%s; gateway VmRSS %d -> %d KiB with %d open|%s\n", fig, gk, nref, gb, gp, go, r
}' "$tmp/streams-gw.txt" "$tmp/streams-nginx.txt"
exit 0
