"""The pocket MSP: real Linux hosts (sshd in namespaces) in sites on one machine (DESIGN.md §7)."""

from mssp.lab.layout import LabSpec
from mssp.lab.runtime import down, status, up

__all__ = ["LabSpec", "down", "status", "up"]
