#!/usr/bin/env bash
# Sending mail through Postfix with ringmail's passwords (issue 20): Debian's
# Postfix runs a submission service on loopback whose SASL checks go to
# ringmail's auth socket (Dovecot's protocol, `smtpd_sasl_type = dovecot`),
# and relays what it accepts to a small SMTP sink. tests/submission/check.py
# says what is checked. Postfix runs as its own instance in a temporary
# directory (start-fg, logging to stdout); nothing of the system's Postfix
# configuration is touched. Needs root (Postfix's queue).
#
#   tests/submission/postfix.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
if ! dpkg -s postfix >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postfix openssl >/dev/null
fi

profile=debug
if [ "${1:-}" = "--release" ]; then profile=release; fi
if [ $profile = release ]; then cargo build -q --release -p ringmail; else cargo build -q -p ringmail; fi

work=$(mktemp -d /tmp/rm-submission-XXXXXX)
chmod 755 "$work"
pf="$work/postfix"
cleanup() {
    set +e
    [ -n "${pf_pid:-}" ] && { $sudo postfix -c "$pf/conf" stop >/dev/null 2>&1; kill "$pf_pid" 2>/dev/null; wait "$pf_pid" 2>/dev/null; }
    [ -n "${rm_pid:-}" ] && { kill "$rm_pid" 2>/dev/null; wait "$rm_pid" 2>/dev/null; }
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# Ports: ringmail's IMAP and auth socket, Postfix's submission, the sink.
imap=33143 auth=33312 submission=33587 sink=33525

# ringmail: one user, the auth socket on loopback.
mkdir -p "$work/ringmail"
echo "ann:{PLAIN}sesame" > "$work/ringmail/users"
"target/$profile/ringmail" serve --data-dir "$work/ringmail" --imap 127.0.0.1:$imap --imaps 127.0.0.1:0 --lmtp 127.0.0.1:0 \
    --pop3 127.0.0.1:0 --pop3s 127.0.0.1:0 --auth-socket 127.0.0.1:$auth 2> "$work/ringmail.log" &
rm_pid=$!

# Postfix: its own configuration directory, queue and certificate. These
# main.cf and master.cf lines are the ones README.md shows.
mkdir -p "$pf/conf" "$pf/spool" "$pf/data"
chown postfix "$pf/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=submit.test \
    -keyout "$pf/key.pem" -out "$pf/cert.pem" 2>/dev/null
cat > "$pf/conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = submit.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relayhost = [127.0.0.1]:$sink
maillog_file = /dev/stdout
smtpd_tls_cert_file = $pf/cert.pem
smtpd_tls_key_file = $pf/key.pem
CF
# Debian's master.cf without its port-25 smtpd, plus the submission service.
grep -v '^smtp      inet' /etc/postfix/master.cf > "$pf/conf/master.cf"
cat >> "$pf/conf/master.cf" <<CF
127.0.0.1:$submission inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:127.0.0.1:$auth
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
CF
$sudo postfix -c "$pf/conf" start-fg > "$work/postfix.log" 2>&1 &
pf_pid=$!

export WORK="$work" IMAP=$imap SUBMISSION=$submission SINK=$sink
python3 -u tests/submission/check.py || { echo "--- postfix log"; tail -40 "$work/postfix.log"; echo "--- ringmail log"; tail -20 "$work/ringmail.log"; exit 1; }
