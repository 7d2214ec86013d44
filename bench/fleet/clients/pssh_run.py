"""parallel-ssh (libssh2 under gevent) with its defaults (pool_size 100): one run on new
connections (cold), or timed runs on the client's open connections (warm).

parallel-ssh's native client does not verify host keys: it does less work than the others."""

from __future__ import annotations

from common import Timer, arguments, hosts, report
from pssh.clients import ParallelSSHClient

TIMEOUT = 120


def run(client: ParallelSSHClient, command: str, errors: list[str]) -> int:
    output = client.run_command(command, stop_on_errors=False)
    client.join(output, timeout=TIMEOUT)
    ok = 0
    for host_out in output:
        lines = [] if host_out.exception else [line.strip() for line in host_out.stdout]
        if host_out.exception is None and host_out.exit_code == 0 and lines == ["ok"]:
            ok += 1
        elif len(errors) < 5:
            errors.append(
                f"{host_out.host}: {host_out.exception!r} rc={host_out.exit_code} {lines}"
            )
    return ok


def main() -> None:
    args = arguments()
    client = ParallelSSHClient(
        hosts(args), user=args.user, pkey=args.key, num_retries=1, timeout=TIMEOUT
    )
    errors: list[str] = []
    if args.mode == "cold":
        report(ok=run(client, args.command, errors), errors=errors)
        return
    with Timer() as first:
        ok = run(client, args.command, errors)
    runs = []
    for _ in range(args.runs):
        with Timer() as t:
            ok = run(client, args.command, errors)
        runs.append(t.as_dict(ok))
    report(connect=first.as_dict(ok), runs=runs, errors=errors)


if __name__ == "__main__":
    main()
