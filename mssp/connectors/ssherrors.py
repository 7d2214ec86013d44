"""Translation of asyncssh and socket failures into the mssp error tree, by exception type."""

from __future__ import annotations

import asyncssh

from mssp.errors import AuthError, ConnectError, HostKeyError


def map_error(exc: BaseException, host: str, *, during: str) -> ConnectError:
    """Translate a transport failure into the mssp error tree, by type."""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError("host key not verifiable", host=host)
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError("the host refused the credentials", host=host)
    if isinstance(exc, TimeoutError):
        return ConnectError(f"{during}: timed out", host=host)
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        error = ConnectError(
            f"{during}: no common algorithm with the host ({exc.reason})", host=host
        )
        error.retryable = False
        return error
    if isinstance(exc, asyncssh.ChannelOpenError):
        return ConnectError(f"{during}: the host refused a channel ({exc.reason})", host=host)
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(f"{during}: disconnected ({exc.reason})", host=host)
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return ConnectError(f"{during}: {reason}", host=host)
    if isinstance(exc, asyncssh.Error):
        return ConnectError(f"{during}: {exc.reason}", host=host)
    return ConnectError(f"{during}: {type(exc).__name__}", host=host)
