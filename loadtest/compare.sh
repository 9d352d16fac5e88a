#!/usr/bin/env bash
# Runs the same load against Dovecot (Debian's 2.3) and ringmail, one after
# the other on this machine, and prints a side-by-side table with ratios.
#
#   loadtest/compare.sh [--mode reuse|stock] [--users N] [--messages M]
#                       [--duration 20s] [--warmup 3s] [--scenarios "login session mix idle"]
#                       [--idle-connections N] [--sources 127.0.0.1-127.0.0.8] [--work DIR]
#
# Dovecot runs with loadtest/dovecot/dovecot.conf plus reuse.conf (process
# reuse and high-performance login, its documented tuning) or stock.conf.
# Both servers get the same users (one passwd-file, {PLAIN} passwords), the
# same deterministic corpus (ringmail-load populate), and fsync on commit
# (ringmail's default; Dovecot's mail_fsync=optimized default).
#
# Scenarios: login, session, mix, idle (the table), tls-login and tls-session
# (the same over implicit TLS: a full handshake per connection, certificates
# self-signed on both sides), zip-SCENARIO and zip-tls-SCENARIO (the same
# with COMPRESS=DEFLATE after LOGIN, e.g. zip-idle), and also append and lmtp
# (delivery), pop3 and tls-pop3 (connect, USER/PASS, STAT, UIDL, three
# RETRs, QUIT; over implicit TLS), and `yardstick`: ringmail-load's login rate against Dovecot
# next to a plain Python imaplib loop's (imaplib_baseline.py), which shows
# the tool measures the server, not itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=reuse users=100 messages=50 duration=20s warmup=3s
scenarios="login session mix idle" idle_conns=1000 sources=127.0.0.1-127.0.0.8
work=/tmp/ringmail-compare
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        --messages) messages=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --scenarios) scenarios=$2; shift 2 ;;
        --idle-connections) idle_conns=$2; shift 2 ;;
        --sources) sources=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

dv_imap=20143 dv_lmtp=20024 dv_imaps=20993 rm_imap=21143 rm_lmtp=21024 rm_imaps=21993
dv_pop3=20110 dv_pop3s=20995 rm_pop3=21110 rm_pop3s=21995

if ! dpkg -s dovecot-imapd dovecot-lmtpd dovecot-pop3d >/dev/null 2>&1; then
    echo "== installing Dovecot from Debian's packages"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-imapd dovecot-lmtpd dovecot-pop3d >/dev/null
fi
id rmbench >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin rmbench

echo "== building ringmail and ringmail-load (release)"
cargo build --release -q -p ringmail -p ringmail-load
load="$root/target/release/ringmail-load"

stop_dovecot() {
    if [ -f "$work/dovecot/run/master.pid" ]; then dovecot -c "$work/dovecot/dovecot.conf" stop 2>/dev/null || true; fi
}
cleanup() {
    if [ -n "${rm_pid:-}" ]; then kill "$rm_pid" 2>/dev/null || true; wait "$rm_pid" 2>/dev/null || true; fi
    stop_dovecot
}
trap cleanup EXIT

stop_dovecot   # left over from an interrupted run
rm -rf "$work" && mkdir -p "$work/dovecot/mail" "$work/ringmail" "$work/results"
for i in $(seq 0 $((users - 1))); do echo "user$i:{PLAIN}pass"; done > "$work/users"
cp "$work/users" "$work/dovecot/users"
cp "$work/users" "$work/ringmail/users"
chown -R rmbench:rmbench "$work/dovecot/mail"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=$(hostname)" \
    -keyout "$work/dovecot/key.pem" -out "$work/dovecot/cert.pem" 2>/dev/null
sed -e "s|@WORK@|$work/dovecot|g" -e "s|@MAIL_USER@|rmbench|g" -e "s|@IMAP_PORT@|$dv_imap|g" -e "s|@LMTP_PORT@|$dv_lmtp|g" -e "s|@IMAPS_PORT@|$dv_imaps|g" \
    -e "s|@POP3_PORT@|$dv_pop3|g" -e "s|@POP3S_PORT@|$dv_pop3s|g" \
    loadtest/dovecot/dovecot.conf > "$work/dovecot/dovecot.conf"
cp "loadtest/dovecot/$mode.conf" "$work/dovecot/mode.conf"

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }

echo "== starting Dovecot ($(dovecot --version), $mode) on :$dv_imap"
dovecot -c "$work/dovecot/dovecot.conf"
wait_port $dv_imap
dv_pid=$(cat "$work/dovecot/run/master.pid")

start_ringmail() {
    if [ -n "${rm_pid:-}" ]; then kill "$rm_pid"; wait "$rm_pid" 2>/dev/null || true; fi
    echo "== starting ringmail on :$rm_imap"
    "$root/target/release/ringmail" serve --data-dir "$work/ringmail" --imap 127.0.0.1:$rm_imap --imaps 127.0.0.1:$rm_imaps \
        --lmtp 127.0.0.1:$rm_lmtp --pop3 127.0.0.1:$rm_pop3 --pop3s 127.0.0.1:$rm_pop3s 2>> "$work/ringmail.log" &
    rm_pid=$!
    wait_port $rm_imap
}
ulimit -n 20000 2>/dev/null || true
start_ringmail

common=(--user 'user%d' --users "$users" --password pass --source "$sources" --quiet)
for server in dovecot ringmail; do
    port=$dv_imap; [ $server = ringmail ] && port=$rm_imap
    echo "== populating $server: $users users x $messages messages"
    "$load" populate --target 127.0.0.1:$port "${common[@]}" --messages "$messages" --connections 8 | grep -vE "^(operation|APPEND|LOGIN|LOGOUT|STATUS|connect) " || true
done
# A fresh ringmail process, so that the idle memory baseline is not the heap
# the populate run left behind (freed lazily by the allocator).
start_ringmail

run() { # server scenario extra-args...
    local server=$1 scenario=$2; shift 2
    local port=$dv_imap pidargs=(--pid "$rm_pid")
    [ $server = ringmail ] && port=$rm_imap
    [ "$scenario" = lmtp ] && { port=$dv_lmtp; [ $server = ringmail ] && port=$rm_lmtp; }
    local name=$scenario
    [ "$scenario" = pop3 ] && { port=$dv_pop3; [ $server = ringmail ] && port=$rm_pop3; }
    [ "$scenario" = tls-pop3 ] && { scenario=pop3; set -- --tls "$@"; port=$dv_pop3s; [ $server = ringmail ] && port=$rm_pop3s; }
    echo "== $name against $server" >&2
    case $scenario in zip-*)
        scenario=${scenario#zip-}; set -- --compress "$@" ;;
    esac
    case $scenario in tls-*)
        scenario=${scenario#tls-}; set -- --tls "$@"
        port=$dv_imaps; [ $server = ringmail ] && port=$rm_imaps ;;
    esac
    [ $server = dovecot ] && pidargs=(--pid "$dv_pid" --pid-tree)
    [ "$scenario" != idle ] && pidargs=()

    "$load" "$scenario" --target 127.0.0.1:$port "${common[@]}" "${pidargs[@]}" --json "$work/results/$name-$server.json" "$@" \
        > "$work/results/$name-$server.txt" || true
    sed -n '2,40p' "$work/results/$name-$server.txt" >&2
}

yardstick() {
    echo "== yardstick: Python imaplib loop and ringmail-load, login against Dovecot" >&2
    for p in 1 2 4; do
        python3 loadtest/imaplib_baseline.py --target 127.0.0.1:$dv_imap --users "$users" --processes $p --duration "${duration%s}"
    done > "$work/results/imaplib.jsonl"
    cat "$work/results/imaplib.jsonl" >&2
    run dovecot login --connections 64 --duration "$duration" --warmup "$warmup"
    python3 - "$work/results" <<'PY'
import json, sys
d = sys.argv[1]
runs = [json.loads(l) for l in open(f"{d}/imaplib.jsonl")]
tool = json.load(open(f"{d}/login-dovecot.json"))
rate, cpu = tool["sessions_per_sec"], tool["client_cpu_us_per_unit"]
print(f"yardstick (login against Dovecot): ringmail-load {rate:,.1f} sessions/s using {cpu:,.0f} us of client CPU per session")
for py in runs:
    print(f"  Python imaplib, {py['processes']} process(es): {py['sessions_per_sec']:,.1f} sessions/s "
          f"({rate / py['sessions_per_sec']:.2f}x fewer), {py['cpu_us_per_session']:,.0f} us of client CPU per session "
          f"({py['cpu_us_per_session'] / cpu:.1f}x more)")
PY
}

for s in $scenarios; do
    if [ "$s" = yardstick ]; then yardstick; continue; fi
    for server in dovecot ringmail; do
        case $s in
            login|session|tls-login|tls-session|zip-session|zip-tls-session|pop3|tls-pop3) run $server $s --connections 64 --duration "$duration" --warmup "$warmup" ;;
            mix|zip-mix|zip-tls-mix) run $server $s --connections 100 --duration "$duration" --warmup "$warmup" ;;
            idle|tls-idle|zip-idle|zip-tls-idle) run $server $s --connections "$idle_conns" --duration 5s ;;
            *) run $server "$s" --duration "$duration" --warmup "$warmup" ;;
        esac
    done
done

echo
echo "ringmail vs Dovecot $(dovecot --version | cut -d' ' -f1) ($mode), $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r)"
python3 - "$work/results" ${scenarios//yardstick/} <<'PY'
import json, os, sys
d, scen = sys.argv[1], sys.argv[2:]
def load(s, server):
    p = os.path.join(d, f"{s}-{server}.json")
    return json.load(open(p)) if os.path.exists(p) else None
rows = []
for s in scen:
    dv, rm = load(s, "dovecot"), load(s, "ringmail")
    if not dv or not rm:
        rows.append((s, "missing result", "-", "-", "-")); continue
    p99 = lambda r, k: r["latency_ms"].get(k, {}).get("p99", "-")
    if s.removeprefix("zip-").removeprefix("tls-") in ("login", "session", "pop3"):
        rows.append((s, "sessions/s", dv["sessions_per_sec"] or 0.0, rm["sessions_per_sec"] or 0.0, None))
        rows.append((s, "session p99 ms", p99(dv, "session"), p99(rm, "session"), None))
    elif s.endswith("idle"):
        if "memory" in dv and "memory" in rm:
            rows.append((s, "private B/conn", dv["memory"]["private_per_connection"], rm["memory"]["private_per_connection"], None))
            rows.append((s, "anonymous B/conn", dv["memory"]["anonymous_per_connection"], rm["memory"]["anonymous_per_connection"], None))
            rows.append((s, "RSS B/conn", dv["memory"]["rss_per_connection"], rm["memory"]["rss_per_connection"], None))
    else:
        rows.append((s, "commands/s", dv["total_ops_per_sec"], rm["total_ops_per_sec"], None))
        lat = lambda r: max([v["p99"] for k, v in r["latency_ms"].items() if k != "connect"] or [0.0])
        rows.append((s, "worst p99 ms", lat(dv), lat(rm), None))
    rows.append((s, "errors", dv["errors"], rm["errors"], None))
print(f"| {'scenario':<8} | {'metric':<16} | {'Dovecot':>12} | {'ringmail':>12} | {'ringmail/Dovecot':>16} |")
print(f"|{'-'*10}|{'-'*18}|{'-'*14}|{'-'*14}|{'-'*18}|")
for s, m, a, b, _ in rows:
    fa = f"{a:,.1f}" if isinstance(a, float) else str(a)
    fb = f"{b:,.1f}" if isinstance(b, float) else str(b)
    ratio = f"{b / a:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
    print(f"| {s:<8} | {m:<16} | {fa:>12} | {fb:>12} | {ratio:>16} |")
PY
