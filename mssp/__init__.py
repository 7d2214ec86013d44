"""mssp: a terminal-first remote-support and managed-services platform."""

__version__ = "0.1.0"
