"""Which configuration keys hold secrets when nothing declares them so.

An application declares its secret fields (type ``password``, ``secret: true``); a key it
does not declare, set with ``--config``/``--env`` or typed in the TUI, is treated as a
secret when its name says it is one — encrypted at rest, masked in listings and output —
and any value can be marked secret explicitly (``--secret KEY=VALUE``). The daemon, the
CLI and the TUI (which masks such values while they are typed) share this one rule.
"""

from __future__ import annotations

import re

# *PASSWORD*, *PASSWD*, *TOKEN*, *SECRET*, *APIKEY*, *_KEY (case-insensitive).
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|APIKEY|_KEY$", re.IGNORECASE)


def looks_secret(key: str) -> bool:
    """Whether an undeclared key's name says its value is a secret."""
    return bool(_SECRET_NAME.search(key))
