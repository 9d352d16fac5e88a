# Shared by check.sh, apply.sh and revert.sh (sourced, not run).
# Settings come from sysctl.d/90-ringmail.conf: every `key = value` line, with
# the `# check: MODE [important]` line above it.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/sysctl.d/90-ringmail.conf"
root=""   # --root DIR: read and write DIR/proc/sys/... instead of /proc/sys/... (tests)

# Prints `key|recommended|mode|important` per setting.
settings() {
    local mode=eq important=0 line key want
    while IFS= read -r line; do
        case "$line" in
            "# check:"*)
                read -r mode important <<<"${line#"# check:"}"
                [ "${important:-}" = important ] && important=1 || important=0
                continue ;;
            "#"* | "") continue ;;
        esac
        key=$(echo "${line%%=*}" | xargs)
        want=$(echo "${line#*=}" | xargs)
        echo "$key|$want|$mode|$important"
        mode=eq important=0
    done <"$conf"
}

proc_path() { echo "$root/proc/sys/$(echo "$1" | tr . /)"; }

# The current value, whitespace-normalised; empty if the kernel lacks it.
current() {
    local p
    p=$(proc_path "$1")
    [ -r "$p" ] && tr -s '\t ' '  ' <"$p" | xargs || true
}

# is_ok MODE CURRENT RECOMMENDED
is_ok() {
    local mode=$1 cur=$2 want=$3 clo chi wlo whi
    case $mode in
        min) [ "$cur" -ge "$want" ] ;;
        max) [ "$cur" -le "$want" ] ;;
        range)
            read -r clo chi <<<"$cur"; read -r wlo whi <<<"$want"
            [ "$clo" -le "$wlo" ] && [ "$chi" -ge "$whi" ] ;;
        *) [ "$cur" = "$want" ] ;;
    esac
}
