"""The shared secret the cluster sends on every callback: `--callback-secret`, or made once and kept in the data
dir (mode 0600) so that endpoints registered before a restart keep working."""

from __future__ import annotations

import hmac
import os
import secrets

from sidecar.settings import Settings

SECRET_FILE = "callback_secret"


def callback_secret(settings: Settings) -> str | None:
    """None only without a cluster and without `--callback-secret`: the callbacks are then open (loopback)."""
    if settings.callback_secret:
        return settings.callback_secret
    if not settings.es_url:
        return None
    path = settings.data_dir / SECRET_FILE
    if path.exists() and (kept := path.read_text().strip()):
        return kept
    secret = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    partial.replace(path)
    return secret


def bearer_matches(header: str | None, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time."""
    return hmac.compare_digest((header or "").encode(), f"Bearer {secret}".encode())
