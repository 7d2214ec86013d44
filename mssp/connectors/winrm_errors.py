"""How WinRM failures become mssp.errors: by exception type (pywinrm, requests, ssl), never text."""

from __future__ import annotations

import ssl

import requests
from winrm.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError

from mssp.connectors.winrm_settings import WinRMSettings
from mssp.errors import AuthError, ConnectError, HostKeyError, MsspError

FAULT_SHELL_NOT_FOUND = 2150858843  # the shell is gone (host rebooted, shell idled out)


def map_error(exc: BaseException, s: WinRMSettings) -> MsspError:
    """The mssp error for `exc` raised while talking to the host of `s`."""
    if isinstance(exc, MsspError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):  # a ConnectionError: check it first
        if s.cert_sha256 is not None:
            return pin_mismatch(s, None)
        if _caused_by(exc, ssl.SSLCertVerificationError):
            err = HostKeyError(
                f"the TLS certificate at {s.url} is not trusted ({_cause_text(exc)}); "
                "install the CA with ca_file or pin it with cert_sha256",
                host=s.host,
            )
            err.title = "Certificate not trusted"
            return err
        return ConnectError(f"TLS handshake with {s.url} failed", host=s.host)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ConnectError(f"timed out connecting to {s.url}", host=s.host)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return ConnectError(f"no reply from {s.url} within {s.read_timeout}s", host=s.host)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectError(f"cannot reach {s.url} (connection refused or dropped)", host=s.host)
    if isinstance(exc, AuthenticationError):  # InvalidCredentialsError, BasicAuthDisabledError
        return AuthError(
            f"the WinRM service rejected the credentials of {s.username!r}", host=s.host
        )
    if isinstance(exc, WSManFaultError):
        if exc.wsman_fault_code == FAULT_SHELL_NOT_FOUND:
            return ConnectError("the host restarted during the command (shell lost)", host=s.host)
        return ConnectError(
            f"WS-Management fault {exc.wsman_fault_code}: {exc.reason}", host=s.host
        )
    if isinstance(exc, WinRMTransportError):  # not a WinRMError
        return ConnectError(f"HTTP {exc.code} from the WinRM service at {s.url}", host=s.host)
    if isinstance(exc, (WinRMError, requests.RequestException, OSError)):
        return ConnectError(f"WinRM failure: {type(exc).__name__}", host=s.host)
    return ConnectError(f"unexpected WinRM failure: {type(exc).__name__}", host=s.host)


def pin_mismatch(s: WinRMSettings, seen: str | None) -> HostKeyError:
    presented = f"presents SHA-256 {seen}" if seen else "does not match"
    err = HostKeyError(
        f"the TLS certificate at {s.url} {presented}; the pinned certificate is {s.cert_sha256}",
        host=s.host,
    )
    err.title = "Certificate mismatch"
    return err


def _chain(exc: BaseException) -> list[BaseException]:
    """Every exception wrapped in `exc` (args, causes, urllib3's `reason`), each once."""
    found: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is f for f in found):
            continue
        found.append(current)
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for link in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(link, BaseException):
                stack.append(link)
    return found


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in _chain(exc))


def _cause_text(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or "verification failed"
    return "verification failed"
