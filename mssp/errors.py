"""The one exception tree of mssp: every error the core raises is an MsspError.

Errors are translated into this tree at the boundary (connectors, importers, the vault), by type,
never by matching message text. Each error carries a short ``title`` for the UI. Messages never
contain secrets: code that formats one from outside data must not pass a credential into it.
"""

from __future__ import annotations


class MsspError(Exception):
    """Base of every error mssp raises on purpose."""

    title = "Error"
    #: the process exit code the CLI uses when this error ends a command
    exit_code = 1

    def __init__(self, message: str = "", *, title: str | None = None) -> None:
        super().__init__(message)
        if title is not None:
            self.title = title

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.title


class ConfigError(MsspError):
    """Settings or the MSSP_HOME layout are invalid."""

    title = "Configuration error"
    exit_code = 2


class UsageError(MsspError):
    """A command was called with arguments that cannot work (bad target expression, ...)."""

    title = "Usage error"
    exit_code = 2


class DatabaseError(MsspError):
    """The database could not be opened, migrated or written."""

    title = "Database error"


class NotFoundError(MsspError):
    """A named client, site, host, credential, run or schedule does not exist."""

    title = "Not found"
    exit_code = 3


class AlreadyExistsError(MsspError):
    """A client, site, host or credential with that name already exists."""

    title = "Already exists"
    exit_code = 3


class InventoryError(MsspError):
    """An inventory file or a target expression is invalid. Names file and line where known."""

    title = "Inventory error"
    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class VaultError(MsspError):
    """The vault cannot be opened (wrong passphrase, tampered data, missing key)."""

    title = "Vault error"


class ConnectError(MsspError):
    """A host or relay could not be reached. Transient unless a subclass says otherwise."""

    title = "Cannot connect"
    #: whether the engine and the connection manager may retry after this error
    retryable = True

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(f"{host}: {message}" if host else message)
        self.host = host


class AuthError(ConnectError):
    """The host refused our credentials. Never retried."""

    title = "Authentication failed"
    retryable = False


class HostKeyError(ConnectError):
    """The host's key is unknown under a strict policy, or differs from the pinned key.

    Raised before any credential is offered. Never retried.
    """

    title = "Host key mismatch"
    retryable = False


class RelayUnavailable(ConnectError):
    """The relay, or the site's agent behind it, cannot be reached now."""

    title = "Relay unavailable"


class TargetRefused(ConnectError):
    """The site agent refused to open a channel to that host and port (outside its allowlist)."""

    title = "Target refused by agent"
    retryable = False


class CommandError(MsspError):
    """A remote command exited non-zero while ``check=True``. Carries the result."""

    title = "Command failed"

    def __init__(self, message: str, result: object | None = None) -> None:
        super().__init__(message)
        self.result = result


class CommandTimeout(CommandError):
    """A remote command did not finish within its timeout."""

    title = "Command timed out"


class TransferError(MsspError):
    """A file transfer failed or its hash did not match on the far side."""

    title = "Transfer failed"


class TaskError(MsspError):
    """A task was given invalid parameters or could not plan or apply its change."""

    title = "Task error"


class ParameterError(TaskError):
    """A task parameter is invalid (for example a value a shell would interpret)."""

    title = "Invalid parameter"
    exit_code = 2


class RunError(MsspError):
    """A fleet run cannot be started, resumed or retried."""

    title = "Run error"


class AuditError(MsspError):
    """The audit log cannot be written or its chain is broken."""

    title = "Audit error"


class LabError(MsspError):
    """The lab cannot be started or stopped on this machine."""

    title = "Lab error"


class RelayProtocolError(MsspError):
    """A relay message, join token or enrolment step is malformed or refused."""

    title = "Relay protocol error"


class InsecureTransportError(ConnectError):
    """The connection settings would expose credentials or data (Basic or plaintext over HTTP).

    Raised before any traffic is sent. Never retried: the settings must change.
    """

    title = "Insecure transport refused"
    retryable = False


class RecordingError(MsspError):
    """A session recording cannot be written, or a file is not a valid asciicast v2 recording."""

    title = "Recording error"
