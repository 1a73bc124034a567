"""What every store backend keeps: models and their aliases, definitions, vocabularies, deployments, routing, nodes."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class AlreadyExists(Exception):
    """A create lost to an existing record (a duplicate id, part, vocabulary or deployment)."""


class ModelMissing(Exception):
    """A deployment lost to its model: the model is not stored, or its deletion got there first."""


class ModelDeployed(Exception):
    """A model's deletion lost to a deployment of it: stop the deployment first."""


class AliasChanged(Exception):
    """An alias write lost to another: the alias no longer names the model the writer saw."""


@dataclass(frozen=True)
class PartInfo:
    """A stored definition chunk, without its bytes (enough to check a definition is whole)."""

    part: int
    total_parts: int
    total_definition_length: int
    length: int


class Store(abc.ABC):
    """Persistence behind one interface, so nodes can share state through any backend.

    Every write is atomic: a crash half way through leaves the previous state, never a half-written record.
    """

    @property
    @abc.abstractmethod
    def cluster_uuid(self) -> str: ...

    # models -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_model(self, config: dict[str, Any]) -> None:
        """Store a new model config; AlreadyExists if the id is taken."""

    @abc.abstractmethod
    def get_model(self, model_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def list_models(self) -> list[dict[str, Any]]:
        """Every model config, sorted by id."""

    @abc.abstractmethod
    def delete_model(self, model_id: str) -> bool:
        """Delete the config, its definition parts and vocabulary together; False if it did not exist.

        ModelDeployed, deleting nothing, while a deployment of the model is stored. Serialised with
        `create_deployment`, so that whichever of two racing nodes comes second loses: a deployment never
        outlives its model. The model's aliases go with it, serialised with `put_model_alias` the same way.
        """

    @abc.abstractmethod
    def get_model_alias(self, alias: str) -> str | None:
        """The id of the model `alias` names, read as of the last acknowledged write (any node's)."""

    @abc.abstractmethod
    def model_aliases(self) -> dict[str, str]:
        """Every alias and the model id it names, sorted by alias."""

    @abc.abstractmethod
    def put_model_alias(self, alias: str, model_id: str, expected: str | None) -> None:
        """Point `alias` at `model_id` if it still names `expected` (None: no model), a compare-and-set.

        AliasChanged, writing nothing, if it names another model by now; ModelMissing, writing nothing, if the
        model is not stored or `delete_model` removes it meanwhile: an alias never names a deleted model.
        """

    @abc.abstractmethod
    def delete_model_alias(self, alias: str, model_id: str) -> str | None:
        """Remove `alias` if it names `model_id`; returns the model it named (None: there was no such alias)."""

    @abc.abstractmethod
    def put_definition_part(self, model_id: str, info: PartInfo, data: bytes) -> None:
        """Store one chunk; AlreadyExists if that part is already stored."""

    @abc.abstractmethod
    def definition_parts(self, model_id: str) -> list[PartInfo]:
        """The stored chunks of a definition, ordered by part."""

    @abc.abstractmethod
    def iter_definition(self, model_id: str) -> Iterator[bytes]:
        """The chunks' bytes in part order."""

    @abc.abstractmethod
    def put_vocabulary(self, model_id: str, vocabulary: dict[str, Any]) -> None:
        """Store the vocabulary document; AlreadyExists if there is one."""

    @abc.abstractmethod
    def get_vocabulary(self, model_id: str) -> dict[str, Any] | None: ...

    # deployments --------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_deployment(self, deployment: dict[str, Any]) -> None:
        """Store a deployment keyed by its `model_id`; AlreadyExists if it is already deployed.

        ModelMissing, storing nothing, if the model is not stored or `delete_model` removes it meanwhile.
        """

    @abc.abstractmethod
    def get_deployment(self, model_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def list_deployments(self, fresh: bool = True) -> list[dict[str, Any]]:
        """Every deployment; `fresh=False` may miss writes of the last second (the reconcile loop's read)."""

    @abc.abstractmethod
    def update_deployment(self, model_id: str, changes: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def delete_deployment(self, model_id: str) -> None:
        """Remove a deployment and its routing entries."""

    @abc.abstractmethod
    def put_route(self, model_id: str, node_id: str, state: str, reason: str = "", error_status: int = 0) -> None:
        """Write one node's routing entry for a deployment (ignored if the deployment is gone).

        `error_status` is the HTTP status of a `failed` entry's error (400 for a refused model, 500 otherwise).
        """

    @abc.abstractmethod
    def routes(self, model_id: str) -> dict[str, dict[str, Any]]:
        """node id -> {"routing_state", "reason", "error_status"}, in node id order."""

    @abc.abstractmethod
    def delete_route(self, model_id: str, node_id: str) -> None: ...

    # nodes --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def heartbeat(self, node: dict[str, Any]) -> None:
        """Register or refresh a node (`id`, `name`, `url`, `cores`, ...) with the current time."""

    @abc.abstractmethod
    def nodes(self, fresh: bool = True) -> list[dict[str, Any]]:
        """Every registered node with its `last_seen` (epoch seconds); `fresh=False` as for `list_deployments`."""

    @abc.abstractmethod
    def remove_node(self, node_id: str) -> None:
        """Forget a node and its routing entries."""

    def close(self) -> None:
        """Release connections."""
