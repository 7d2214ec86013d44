"""The relay package's own exception tree (relay/ never imports mssp; the core translates these)."""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error raised by relay/, the server, the agent and the core-side client."""

    title = "Relay error"


class TokenError(RelayError):
    """A join token is malformed, expired, used, revoked or bound to another site."""

    title = "Join token refused"


class RelayProtocolError(RelayError):
    """A message from the other side is malformed or out of place (hostile input, never obeyed)."""

    title = "Relay protocol error"


class RelayAuthError(RelayError):
    """The relay refused our credentials, or a peer failed to prove its identity."""

    title = "Relay authentication failed"


class SiteRevokedError(RelayAuthError):
    """The site was revoked at the relay: its agent is refused from now on."""

    title = "Site revoked"


class RelayUnavailableError(RelayError):
    """The relay, or the site's agent behind it, cannot be reached now (transient)."""

    title = "Relay unavailable"


class ImpersonationError(RelayError):
    """The agent key held by the relay does not carry a valid proof under the binding secret."""

    title = "Agent identity not proven"


class RegistryError(RelayError):
    """The relay's registry file is unreadable, corrupt or locked by a running relay."""

    title = "Relay registry error"


class ConfigError(RelayError):
    """An agent or relay configuration value is invalid."""

    title = "Configuration error"
