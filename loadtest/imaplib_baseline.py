#!/usr/bin/env python3
"""The yardstick for ringmail-load: the `login` scenario (connect, LOGIN,
LOGOUT) as a plain Python imaplib loop, in one or more processes. If
ringmail-load did not drive a server several times harder than this, it
would be measuring itself rather than the server.

    imaplib_baseline.py --target 127.0.0.1:20143 [--processes 2] [--duration 10]
                        [--user 'user%d'] [--users 100] [--password pass]

Prints one JSON object: sessions, errors, seconds, sessions_per_sec, and the
loop's own CPU time (cpu_seconds, cpu_us_per_session).
"""
import argparse
import imaplib
import json
import multiprocessing
import resource
import time


def loop(args, index, out):
    host, port = args.target.rsplit(":", 1)
    deadline = time.monotonic() + args.duration
    sessions = errors = 0
    n = index
    while time.monotonic() < deadline:
        user = args.user.replace("%d", str(n % args.users))
        n += args.processes
        try:
            imap = imaplib.IMAP4(host, int(port), timeout=30)
            imap.login(user, args.password)
            imap.logout()
            sessions += 1
        except (OSError, imaplib.IMAP4.error):
            errors += 1
    out.put((sessions, errors))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--user", default="user%d")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--password", default="pass")
    args = p.parse_args()
    out = multiprocessing.Queue()
    start = time.monotonic()
    procs = [multiprocessing.Process(target=loop, args=(args, i, out)) for i in range(args.processes)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    seconds = time.monotonic() - start
    sessions = sum(r[0] for r in results)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"processes": args.processes, "sessions": sessions, "errors": sum(r[1] for r in results),
                      "seconds": round(seconds, 3), "sessions_per_sec": sessions / seconds,
                      "cpu_seconds": round(cpu, 3), "cpu_us_per_session": cpu * 1e6 / max(sessions, 1)}))


if __name__ == "__main__":
    main()
