"""Code shared by the MultiFlexi daemon, CLI and terminal UI.

Installed as the import package ``multiflexi``: the wire protocol, the socket client,
settings, and the upstream JSON schemas and example applications.
"""

from __future__ import annotations

__version__ = "0.1.0"
