"""Model aliases as Elasticsearch keeps them (ModelAliasMetadata): another name for one model, moved between models
of one kind, resolved wherever the API takes a model id to get, count or infer with.

The rules are TransportPutTrainedModelAliasAction's and TransportDeleteTrainedModelAliasAction's, in their order.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.errors import model_not_found, status_exception, validation_failed
from sidecar.store.base import AliasChanged, ModelMissing, Store

# PutTrainedModelAliasAction.VALID_MODEL_ALIAS_CHAR_PATTERN: a model id's characters, but no trailing digit
_VALID_ALIAS = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z])?")
_DEFAULT_MODEL_TYPE = "tree_ensemble"  # TrainedModelType of a config that names none
_ATTEMPTS = 3  # each lost to another node moving the same alias between the checks and the write


@dataclass(frozen=True)
class PutAlias:
    alias: str
    model_id: str
    reassign: bool = False  # move an alias that names another model


async def resolve_model_id(store: Store, model_id: str) -> str:
    """The model `model_id` names when it is an alias, else `model_id` itself: an alias is never a model id (both
    PUTs refuse that), so this is the only look-up an id needs."""
    return await asyncio.to_thread(store.get_model_alias, model_id) or model_id


def with_aliases(configs: list[dict[str, Any]], aliases: Mapping[str, str]) -> list[dict[str, Any]]:
    """Configs with `metadata.model_aliases`, sorted, on those that have aliases (TrainedModelConfig.Builder)."""
    named: dict[str, list[str]] = {}
    for alias, model_id in aliases.items():
        named.setdefault(model_id, []).append(alias)
    return [_with_metadata(c, sorted(named[c["model_id"]])) if c["model_id"] in named else c for c in configs]


def _with_metadata(config: dict[str, Any], aliases: list[str]) -> dict[str, Any]:
    """`metadata` keeps its place, or takes TrainedModelConfig.toXContent's: just before `input`."""
    metadata = {**(config.get("metadata") or {}), "model_aliases": aliases}
    if "metadata" in config:
        return {**config, "metadata": metadata}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "input":
            out["metadata"] = metadata
        out[key] = value
    return {**out, "metadata": metadata}


def check_model_id_is_not_an_alias(store: Store, model_id: str) -> None:
    """A new model's id may not be an alias (TransportPutTrainedModelAction)."""
    if store.get_model_alias(model_id) is not None:
        raise status_exception(
            400,
            f"requested model_id [{model_id}] is the same as an existing model_alias. "
            "Model model_aliases and ids must be unique",
        )


async def put_alias(store: Store, request: PutAlias) -> list[str]:
    """Point the alias at the model; returns the warnings the answer carries (inputs that differ a lot)."""
    _validate(request)
    for _ in range(_ATTEMPTS):
        previous, warnings = await asyncio.to_thread(_check_put, store, request)
        try:
            await asyncio.to_thread(store.put_model_alias, request.alias, request.model_id, previous)
        except AliasChanged:
            continue  # moved meanwhile: check again against what it names now
        except ModelMissing:
            raise model_not_found(request.model_id) from None
        return warnings
    raise status_exception(409, f"model_alias [{request.alias}] kept changing; gave up after {_ATTEMPTS} attempts")


async def delete_alias(
    store: Store, alias: str, model_id: str, unreferenced: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Remove the alias if it names `model_id`; `unreferenced` raises when the cluster's pipelines still use it."""
    _named_by(alias, model_id, await asyncio.to_thread(store.get_model_alias, alias))
    if unreferenced is not None:
        await unreferenced()
    _named_by(alias, model_id, await asyncio.to_thread(store.delete_model_alias, alias, model_id))


def aliases_of(store: Store, model_id: str) -> list[str]:
    return [alias for alias, named in store.model_aliases().items() if named == model_id]


def _named_by(alias: str, model_id: str, named: str | None) -> None:
    if named is None:
        raise status_exception(404, f"model_alias [{alias}] could not be found")
    if named != model_id:
        raise status_exception(409, f"model_alias [{alias}] does not refer to provided model_id [{model_id}]")


def _validate(request: PutAlias) -> None:
    """PutTrainedModelAliasAction.Request.validate."""
    errors = []
    if request.alias == request.model_id:
        errors.append(f"model_alias [{request.alias}] cannot equal model_id [{request.model_id}]")
    if not _VALID_ALIAS.fullmatch(request.alias):
        errors.append(
            f"Invalid model_alias; '{request.alias}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
            "underscores; must start with alphanumeric and cannot end with numbers"
        )
    if errors:
        raise validation_failed(errors)


def _check_put(store: Store, request: PutAlias) -> tuple[str | None, list[str]]:
    """What the alias names now, once every rule lets it move; the warnings for the answer."""
    alias, model_id = request.alias, request.model_id
    previous = store.get_model_alias(alias)
    if previous is not None and not request.reassign:
        raise status_exception(
            400,
            f"cannot assign model_alias [{alias}] to model_id [{model_id}] as model_alias already refers to "
            f"[{previous}]. Set parameter [reassign] to [true] if model_alias should be reassigned.",
        )
    if store.get_model(alias) is not None:
        raise status_exception(400, "model_alias cannot be the same as an existing trained model_id")
    new = store.get_model(model_id)
    if new is None:
        raise model_not_found(model_id)
    old = store.get_model(previous) if previous is not None else None
    if old is None:  # the model it named went: any model may take it
        return previous, []
    _check_same_kind(alias, new, old)
    if new.get("model_type") == "pytorch":
        _check_deployed(store, alias, new["model_id"], old["model_id"])
    return previous, _input_warnings(new, old)


def _check_same_kind(alias: str, new: dict[str, Any], old: dict[str, Any]) -> None:
    new_task, old_task = _task(new), _task(old)
    if new_task is not None and old_task is not None and new_task != old_task:
        raise status_exception(
            400,
            f"cannot reassign model_alias [{alias}] to model [{new['model_id']}] with inference config type "
            f"[{new_task}] from model [{old['model_id']}] with type [{old_task}]",
        )
    new_type, old_type = (m.get("model_type") or _DEFAULT_MODEL_TYPE for m in (new, old))
    if new_type != old_type:
        raise status_exception(
            400,
            f"cannot reassign model_alias [{alias}] to model [{new['model_id']}] with type [{new_type}] from model "
            f"[{old['model_id']}] with type [{old_type}]",
        )


def _check_deployed(store: Store, alias: str, new_id: str, old_id: str) -> None:
    """An alias in use by a deployed model moves only to a deployed model, and from a started one only to one
    that has started somewhere."""
    deployments = store.list_deployments()
    old = [d for d in deployments if d["model_id"] == old_id]
    new = [d for d in deployments if d["model_id"] == new_id]
    if not old:
        return
    if not new:
        raise status_exception(
            400,
            f"cannot reassign model_alias [{alias}] to model [{new_id}] from model [{old_id}] "
            "as it is not yet deployed",
        )
    if any(_started(store, d) for d in old) and not all(_started(store, d) for d in new):
        raise status_exception(  # the double space is Elasticsearch's
            400,
            f"cannot reassign model_alias [{alias}] to model [{new_id}]  from model [{old_id}] as it is not yet "
            "allocated to any nodes",
        )


def _started(store: Store, deployment: dict[str, Any]) -> bool:
    """Started on some node and not stopping: AllocationStatus `started` or `fully_allocated`."""
    if deployment.get("state") == "stopping":
        return False
    return any(r["routing_state"] == "started" for r in store.routes(deployment["model_id"]).values())


def _input_warnings(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Messages.TRAINED_MODEL_INPUTS_DIFFER_SIGNIFICANTLY, when fewer than half of the old inputs are kept."""
    old_fields, new_fields = (set(m.get("input", {}).get("field_names", [])) for m in (old, new))
    half = len(old_fields) // 2
    if len(old_fields - new_fields) > half or len(old_fields & new_fields) < half:
        return [
            f"The input fields for new model [{new['model_id']}] and for old model [{old['model_id']}] differ "
            "significantly, model results may change drastically."
        ]
    return []


def _task(config: dict[str, Any]) -> str | None:
    return next(iter(config.get("inference_config") or {}), None)
