#!/usr/bin/env bash
# Several hosts on one machine (issue 18): three ringmail backends and an
# nginx mail proxy, each in its own network namespace on a bridge, and the
# test client outside. tests/scale-out/check.py says what is checked. The
# namespaces, the bridge and every process go away at the end, also when
# the test fails. Needs root (ip netns); CI runs it.
#
#   tests/scale-out/netns.sh [--release]     (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
need=""
for p in nginx libnginx-mod-mail iproute2 openssl postfix; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
    # Postfix only for its socketmap client (postmap -q): no mail system set up.
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# Debian starts its nginx on install; this test runs its own.
$sudo systemctl stop nginx >/dev/null 2>&1 || $sudo pkill -x nginx || true

profile=debug
if [ "${1:-}" = "--release" ]; then profile=release; fi
if [ $profile = release ]; then cargo build -q --release -p ringmail -p ringmail-load; else cargo build -q -p ringmail -p ringmail-load; fi

work=$(mktemp -d /tmp/rm-scale-XXXXXX)
chmod 755 "$work"
hosts="b1 b2 b3 px"
cleanup() {
    set +e
    for h in $hosts; do
        for p in $($sudo ip netns pids "rm-$h" 2>/dev/null); do $sudo kill "$p" 2>/dev/null; done
    done
    sleep 0.5
    for h in $hosts; do
        for p in $($sudo ip netns pids "rm-$h" 2>/dev/null); do $sudo kill -9 "$p" 2>/dev/null; done
        $sudo ip netns del "rm-$h" 2>/dev/null
    done
    $sudo ip link del rmbr0 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
cleanup_old() { for h in $hosts; do $sudo ip netns del "rm-$h" 2>/dev/null || true; done; $sudo ip link del rmbr0 2>/dev/null || true; }
cleanup_old

# The bridge (the "network"), 10.77.0.1 for the client; a namespace per host.
$sudo ip link add rmbr0 type bridge
$sudo ip addr add 10.77.0.1/24 dev rmbr0
$sudo ip link set rmbr0 up
declare -A addr=([px]=10.77.0.10 [b1]=10.77.0.11 [b2]=10.77.0.12 [b3]=10.77.0.13)
for h in $hosts; do
    $sudo ip netns add "rm-$h"
    $sudo ip link add "rm-$h-h" type veth peer name "rm-$h-n"
    $sudo ip link set "rm-$h-n" netns "rm-$h"
    $sudo ip link set "rm-$h-h" master rmbr0 up
    $sudo ip -n "rm-$h" addr add "${addr[$h]}/24" dev "rm-$h-n"
    $sudo ip -n "rm-$h" link set "rm-$h-n" up
    $sudo ip -n "rm-$h" link set lo up
done

export RINGMAIL_BIN="$PWD/target/$profile/ringmail" RINGMAIL_LOAD_BIN="$PWD/target/$profile/ringmail-load" WORK="$work"
python3 -u tests/scale-out/check.py
