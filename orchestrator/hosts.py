"""Whether a listen address stays on this machine. Standard library only, so both services' settings use it
(the orchestrator's `Settings.is_loopback` and the ML service's): without an API key, each refuses to listen
anywhere else."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """`localhost`, an empty host, or a loopback IP address (127.0.0.0/8, ::1)."""
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
