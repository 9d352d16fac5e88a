#!/usr/bin/env bash
# Applies the recommended kernel settings now (writing /proc/sys) and for
# every boot (installs sysctl.d/90-ringmail.conf and limits.d/90-ringmail.conf
# under /etc), after saving the current values for revert.sh.
#
#   kernel-tuning/apply.sh [--dry-run] [--root DIR]
#
# --dry-run prints the exact commands and changes nothing.
# --root DIR works on DIR/proc/sys and DIR/etc, DIR/var/lib (tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1; shift ;;
        --root) root=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ $dry = 0 ] && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "apply.sh changes kernel settings: run it as root (or see --dry-run)" >&2
    exit 1
fi

backup_dir="$root/var/lib/ringmail-tuning"
backup="$backup_dir/backup-$(date -u +%Y%m%dT%H%M%SZ).conf"

run() {
    echo "$1"
    if [ $dry = 0 ]; then eval "$1"; fi
}

run "mkdir -p '$backup_dir'"
run ": > '$backup'"
while IFS='|' read -r key want mode _; do
    cur=$(current "$key")
    [ -z "$cur" ] && continue          # not in this kernel
    is_ok "$mode" "$cur" "$want" && continue
    run "echo '$key = $cur' >> '$backup'"
    run "echo '$want' > '$(proc_path "$key")'"
done < <(settings)
run "ln -sfn '$(basename "$backup")' '$backup_dir/latest'"
run "mkdir -p '$root/etc/sysctl.d' '$root/etc/security/limits.d'"
run "install -m 0644 '$here/sysctl.d/90-ringmail.conf' '$root/etc/sysctl.d/90-ringmail.conf'"
run "install -m 0644 '$here/limits.d/90-ringmail.conf' '$root/etc/security/limits.d/90-ringmail.conf'"
if [ $dry = 1 ]; then echo "# dry run: nothing was changed"; else echo "# applied; previous values in $backup (revert.sh restores them)"; fi
