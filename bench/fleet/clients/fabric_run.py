"""Fabric's ThreadingGroup (paramiko, one thread per host), host keys checked against the bench's
known_hosts; cold only (a Group keeps its connections, but Fabric has no pooled fleet mode)."""

from __future__ import annotations

import paramiko
from common import arguments, hosts, report
from fabric import ThreadingGroup
from fabric.exceptions import GroupException

TIMEOUT = 120


def main() -> None:
    args = arguments()
    group = ThreadingGroup(
        *hosts(args),
        user=args.user,
        connect_timeout=TIMEOUT,
        connect_kwargs={"key_filename": args.key, "look_for_keys": False, "allow_agent": False},
    )
    for conn in group:
        conn.client.load_host_keys(args.known_hosts)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        results = group.run(args.command, hide=True, warn=True)
    except GroupException as exc:
        results = exc.result
    ok = sum(
        1
        for result in results.values()
        if not isinstance(result, Exception) and result.ok and result.stdout.strip() == "ok"
    )
    group.close()
    report(ok=ok)


if __name__ == "__main__":
    main()
