"""Secrets at rest: the Canvas tokens and CalDAV passwords of people who connected themselves.

Each secret is stored as a Fernet token (AES-128-CBC with HMAC-SHA256, a timestamp, versioned)
from the ``cryptography`` package. The keys come from ``[state] encryption_key_file`` /
``_credential`` / ``_env``, one per line: the **first** encrypts, every key decrypts
(``MultiFernet``). Rotating is: put a new key first, keep the old ones after it, run
``calbridge keys rotate`` (every stored secret re-encrypted with the first key, in one
transaction), then drop the old keys.

Without a key nothing decrypts; a wrong key is :class:`~bridge.errors.EncryptionKeyError` naming
where the keys came from — never garbage, never a key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.errors import EncryptionKeyError


def generate_key() -> str:
    """A new random key (32 bytes, URL-safe base64), as ``calbridge keys generate`` prints it."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(text: str) -> list[str]:
    """The keys of a key file or variable: one a line (blank lines and ``#`` comments skipped;
    commas also separate, for an environment variable)."""
    found: list[str] = []
    for line in text.splitlines():
        if not line.strip().startswith("#"):
            found += [key.strip() for key in line.split(",") if key.strip()]
    return found


class Vault:
    """Encrypts with the first of ``keys``, decrypts with any. ``source`` says where the keys
    came from (e.g. ``state.encryption_key_file /etc/calbridge/state.key``), for errors."""

    def __init__(self, keys: Sequence[str], *, source: str) -> None:
        self.source = source
        if not keys:
            raise EncryptionKeyError("no encryption key given", source=source)
        fernets: list[Fernet] = []
        for number, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise EncryptionKeyError(
                    f"key {number} is not a Fernet key (32 bytes in URL-safe base64, as "
                    "`calbridge keys generate` prints)",
                    source=source,
                ) from None
        self._fernet = MultiFernet(fernets)
        self._first = base64.urlsafe_b64decode(keys[0].strip().encode("ascii"))
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        return f"Vault({self.key_count} keys from {self.source})"

    def derive_key(self, purpose: str) -> bytes:
        """32 bytes for ``purpose`` (e.g. signing session cookies), derived with HKDF-SHA256
        from the first key: every process given the same keys derives the same bytes, and
        nothing derived reveals the key itself. Rotating the first key changes it."""
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8")
        ).derive(self._first)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str, what: str) -> str:
        """``stored`` opened; ``what`` names it in the error (e.g. "the Canvas token of user
        7") when no key opens it."""
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise EncryptionKeyError(
                f"cannot decrypt {what}: none of the {self.key_count} encryption keys opens it "
                "(a wrong key, or the key it was written with was removed)",
                source=self.source,
            ) from None

    def rotate(self, stored: str, what: str) -> str:
        """``stored`` re-encrypted with the first key."""
        try:
            return self._fernet.rotate(stored.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise EncryptionKeyError(
                f"cannot re-encrypt {what}: none of the {self.key_count} encryption keys opens "
                "it (keep the old key after the new one until `calbridge keys rotate` is done)",
                source=self.source,
            ) from None


class NoVault:
    """What the store holds when no key is configured: secrets cannot be read or written."""

    key_count = 0

    def __init__(self, source: str) -> None:
        self.source = source

    def _refuse(self, what: str) -> EncryptionKeyError:
        return EncryptionKeyError(
            f"{what}: no encryption key is configured; set [state] encryption_key_file, "
            "encryption_key_credential or encryption_key_env",
            source=self.source,
        )

    def derive_key(self, purpose: str) -> bytes:
        raise self._refuse(f"cannot derive the key for {purpose}")

    def encrypt(self, plain: str) -> str:
        raise self._refuse("cannot store a token or password")

    def decrypt(self, stored: str, what: str) -> str:
        raise self._refuse(f"cannot decrypt {what}")

    def rotate(self, stored: str, what: str) -> str:
        raise self._refuse(f"cannot re-encrypt {what}")
