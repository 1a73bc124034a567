"""A node listening beyond loopback must have someone checking its callers: the cluster's security (with
`--es-url`), or an explicit `--insecure`."""

from __future__ import annotations

import ipaddress

from elastic_transport import TransportError

from sidecar.elastic.client import connect
from sidecar.elastic.probe import probe
from sidecar.errors import EsError
from sidecar.settings import Settings


def is_exposed(settings: Settings) -> bool:
    """Listening beyond loopback without `--insecure`."""
    return not settings.insecure and not is_loopback(settings.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def exposure_problem(settings: Settings) -> str | None:
    """Why the node must not start as configured, in one line; None when it may.

    A cluster that cannot be reached yet is no reason: callers are then refused (503) until it answers.
    """
    if not is_exposed(settings):
        return None
    if not settings.es_url:
        return (
            f"refusing to listen on [{settings.host}] without authentication: "
            "connect to a secured cluster with --es-url, or pass --insecure"
        )
    es = connect(settings)
    try:
        security = (await probe(es)).security
    except (TransportError, EsError, KeyError, ValueError):
        return None
    finally:
        await es.close()
    if security:
        return None
    return f"refusing to listen on [{settings.host}]: the cluster at [{settings.es_url}] has security disabled; pass --insecure to serve without authentication"
