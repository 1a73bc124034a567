"""This node's identity: a persistent id in its data dir, its name, URL and usable cores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.ids import new_id
from sidecar.settings import Settings
from sidecar.workers.cores import usable_cores


@dataclass(frozen=True)
class Node:
    id: str
    ephemeral_id: str  # new at every start, as in Elasticsearch
    name: str
    url: str
    cores: tuple[int, ...]



def describe(node: dict[str, Any]) -> dict[str, Any]:
    """The `node` object of Elasticsearch's stats, from a node's registration document."""
    return {
        node["id"]: {
            "name": node["name"],
            "ephemeral_id": node["ephemeral_id"],
            "transport_address": node["url"].split("://", 1)[-1],
            "attributes": {},
        }
    }


def load_node(settings: Settings) -> Node:
    return Node(
        id=_persistent_id(settings.data_dir / "node_id"),
        ephemeral_id=new_id(),
        name=settings.node_name,
        url=settings.url,
        cores=_cores(settings.cores),
    )


def _cores(wanted: tuple[int, ...] | None) -> tuple[int, ...]:
    """`--cores` narrows the usable cores (nodes sharing a host each take their own); it never widens them."""
    usable = usable_cores()
    if not wanted:
        return tuple(usable)
    return tuple(c for c in wanted if c in usable) or tuple(usable)


def _persistent_id(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        node_id = path.read_text().strip()
        if len(node_id) == 22:
            return node_id
    except FileNotFoundError:
        pass
    node_id = new_id()
    partial = path.with_suffix(".partial")
    partial.write_text(node_id)
    partial.replace(path)
    return node_id
