#!/usr/bin/env bash
# Spreads a network card's interrupt queues over the cores: queue i to core
# i mod N, matching ringmail's layout of worker i pinned to core i.
#
# Why aligned rather than kept away from the workers: ringmail runs one worker
# per core and leaves no core idle for interrupts, and receive-side scaling
# already spreads connections over the queues; handling a queue's softirqs
# on the core whose worker then reads the data keeps it in that core's
# cache. The default this fixes is common on VMs: every queue on CPU 0, which
# then spends its time in softirqs while its worker falls behind. (If you
# reserve cores for interrupts instead, run ringmail with --workers set to
# the remaining cores and pass those interrupt cores with --cpus.)
#
#   kernel-tuning/irq-affinity.sh [--apply] [--iface IFACE] [--cpus 0-3] [--root DIR]
#
# Dry run by default: prints the commands. --apply runs them (as root). Stop
# irqbalance first (systemctl disable --now irqbalance) or it will undo them.
set -euo pipefail
apply=0 iface="" cpus="" root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --apply) apply=1; shift ;;
        --iface) iface=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --root) root=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$iface" ]; then
    iface=$(awk '$2 == "00000000" { print $1; exit }' "$root/proc/net/route" 2>/dev/null || true)
    [ -n "$iface" ] || { echo "no default-route interface found; pass --iface" >&2; exit 2; }
fi
# CPUs as a list: from --cpus (e.g. 0-3,6) or every online CPU.
expand() {
    local part out=()
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
    done
    echo "${out[@]}"
}
if [ -z "$cpus" ]; then cpus=$(cat "$root/sys/devices/system/cpu/online" 2>/dev/null || echo 0); fi
read -ra cpu_list <<<"$(expand "$cpus")"

# The interface's interrupts: MSI vectors from sysfs, else /proc/interrupts lines naming it.
irqs=()
if [ -d "$root/sys/class/net/$iface/device/msi_irqs" ]; then
    irqs=($(ls "$root/sys/class/net/$iface/device/msi_irqs" | sort -n))
else
    irqs=($(awk -v i="$iface" 'index($0, i) { sub(":", "", $1); print $1 }' "$root/proc/interrupts"))
fi
if [ ${#irqs[@]} -eq 0 ]; then
    echo "no interrupts found for $iface" >&2
    exit 1
fi
echo "# $iface: ${#irqs[@]} interrupt(s) over CPUs ${cpu_list[*]}"
n=0
for irq in "${irqs[@]}"; do
    [ -e "$root/proc/irq/$irq/smp_affinity_list" ] || continue
    cpu=${cpu_list[$((n % ${#cpu_list[@]}))]}
    cmd="echo $cpu > $root/proc/irq/$irq/smp_affinity_list"
    echo "$cmd"
    if [ $apply = 1 ]; then eval "$cmd" || echo "#   (irq $irq refused: managed by the kernel)" >&2; fi
    n=$((n + 1))
done
[ $apply = 1 ] || echo "# dry run: nothing was changed (--apply to run these)"
