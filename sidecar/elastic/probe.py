"""What the cluster is and what it can do for the callback: version, license, security, inference service.

Facts (see the project's ingest-callback notes): inference endpoints reach external services from 8.12
(`hugging_face`, `openai`); the `custom` service exists in 8.19.x and from 9.1.0 (not in 8.18 or 9.0); from 8.18/9.0
the cluster refuses inference endpoints without an enterprise or trial license (`current license is non-compliant
for [inference]`), earlier versions do not check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from elasticsearch import AsyncElasticsearch

from sidecar.elastic.client import call

Version = tuple[int, int, int]
CUSTOM, HUGGING_FACE = "custom", "hugging_face"
_LICENSED = ("enterprise", "trial")


@dataclass(frozen=True)
class ClusterInfo:
    version: str
    license_type: str
    license_status: str
    security: bool
    service: str | None  # the inference service endpoints are made with; None when the cluster cannot take them
    reason: str | None  # why it cannot, in words an operator acts on

    @property
    def parsed_version(self) -> Version:
        return parse_version(self.version)


async def probe(es: AsyncElasticsearch) -> ClusterInfo:
    """`GET /`, `GET _license` and `GET _xpack` (security), as the node's own user."""
    version = (await call(es, "GET", "/"))["version"]["number"]
    license = (await call(es, "GET", "/_license"))["license"]
    features = (await call(es, "GET", "/_xpack", params={"categories": "features"}))["features"]
    service, reason = capability(parse_version(version), license["type"], license["status"])
    return ClusterInfo(
        version, license["type"], license["status"], bool(features["security"]["enabled"]), service, reason
    )


def parse_version(text: str) -> Version:
    """`9.1.5`, `8.19.0-SNAPSHOT` → (9, 1, 5), (8, 19, 0)."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"unrecognised Elasticsearch version [{text}]")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def capability(version: Version, license_type: str, license_status: str) -> tuple[str | None, str | None]:
    """The service to register endpoints with, or None and the reason."""
    shown = ".".join(map(str, version))
    if version < (8, 12, 0):
        return None, f"Elasticsearch [{shown}] cannot call external models from ingest pipelines (8.12 or later needed)"
    if license_status != "active":
        return None, f"the cluster's [{license_type}] license is [{license_status}]"
    if version >= (8, 18, 0) and license_type not in _LICENSED:
        return (
            None,
            f"inference endpoints need an enterprise or trial license; the cluster's license is [{license_type}]",
        )
    return (CUSTOM if has_custom_service(version) else HUGGING_FACE), None


def has_custom_service(version: Version) -> bool:
    return (8, 19, 0) <= version < (9, 0, 0) or version >= (9, 1, 0)
