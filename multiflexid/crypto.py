"""Encryption at rest of secret values (credential passwords, secret overrides).

The key is a Fernet key in ``<data dir>/secret.key``, created 0600 on first use. Losing
it makes stored secrets unreadable, so it is never rewritten once it exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from multiflexi.errors import MultiFlexiError

MASK = "********"


class SecretKeyError(MultiFlexiError):
    """The key file cannot be read or created, or a stored secret does not decrypt."""

    name = "secret_key_error"


class SecretBox:
    """Encrypts and decrypts secret values with the installation's key."""

    def __init__(self, key_path: Path, in_use: Callable[[], int] | None = None) -> None:
        """``in_use()`` counts the encrypted values already stored: a missing key file is
        only created anew when there are none (else they would be lost for good)."""
        self.key_path = key_path
        self.in_use = in_use
        self._fernet: Fernet | None = None

    def _load(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._read_or_create())
        return self._fernet

    def _read_or_create(self) -> bytes:
        path = self.key_path
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        except PermissionError:
            raise SecretKeyError(
                f"{path}: permission denied reading the secret key "
                "(run as the multiflexi user or root)"
            ) from None
        stored = self.in_use() if self.in_use is not None else 0
        if stored:
            raise SecretKeyError(
                f"{path}: the secret key is missing, but the database holds {stored} "
                "encrypted value(s) that only it can read; restore the key file from your "
                "backup (a new key would make them unreadable)"
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        key = Fernet.generate_key()
        try:
            # O_EXCL: if another process created it meanwhile, use theirs, never overwrite.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        except OSError as exc:
            raise SecretKeyError(f"{path}: cannot create the secret key: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return key

    def encrypt(self, value: str) -> str:
        return self._load().encrypt(value.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._load().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise SecretKeyError(
                f"a stored secret does not decrypt with {self.key_path}: "
                "was the key file replaced?"
            ) from None
