#!/usr/bin/env bash
# Read-only: compares this host's kernel settings with what ringmail wants
# (sysctl.d/90-ringmail.conf) and prints a table. Exits 1 if a setting marked
# important is off, 0 otherwise. Changes nothing.
#
#   kernel-tuning/check.sh [--root DIR]
#
# --root DIR reads DIR/proc/sys instead of /proc/sys (used by the tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

printf '%-32s %-26s %-26s %s\n' SETTING CURRENT RECOMMENDED STATUS
failed=0 changes=0
while IFS='|' read -r key want mode important; do
    cur=$(current "$key")
    if [ -z "$cur" ]; then
        status="n/a (not in this kernel)"
    elif is_ok "$mode" "$cur" "$want"; then
        status=OK
    else
        status=CHANGE; changes=$((changes + 1))
        if [ "$important" = 1 ]; then status="CHANGE (important)"; failed=1; fi
    fi
    printf '%-32s %-26s %-26s %s\n' "$key" "${cur:--}" "$want ($mode)" "$status"
done < <(settings)

echo
if [ $changes -eq 0 ]; then
    echo "All settings as recommended."
else
    echo "$changes setting(s) differ; kernel-tuning/apply.sh --dry-run shows the commands that would change them."
fi
exit $failed
