#!/usr/bin/env bash
# Undoes apply.sh: restores the values it saved (the latest backup, or the
# one given) and removes the files it installed under /etc.
#
#   kernel-tuning/revert.sh [--dry-run] [--root DIR] [--backup FILE]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dry=0 backup=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1; shift ;;
        --root) root=$2; shift 2 ;;
        --backup) backup=$2; shift 2 ;;
        -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$backup" ] || backup="$root/var/lib/ringmail-tuning/latest"
if [ ! -e "$backup" ]; then
    echo "no backup at $backup: apply.sh was not run here" >&2
    exit 1
fi
run() {
    echo "$1"
    if [ $dry = 0 ]; then eval "$1"; fi
}
while IFS= read -r line; do
    [ -z "$line" ] && continue
    key=$(echo "${line%%=*}" | xargs)
    value=$(echo "${line#*=}" | xargs)
    run "echo '$value' > '$(proc_path "$key")'"
done <"$backup"
run "rm -f '$root/etc/sysctl.d/90-ringmail.conf' '$root/etc/security/limits.d/90-ringmail.conf'"
