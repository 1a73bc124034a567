"""The model store API as eland drives it: config, definition parts, vocabulary, get and delete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sidecar.api.endpoint import Context
from sidecar.api.wire import EsRequest, byte_size
from sidecar.errors import EsError, model_not_found, status_exception, validation_failed
from sidecar.logs import event
from sidecar.models import fields
from sidecar.models.aliases import aliases_of, check_model_id_is_not_an_alias, with_aliases
from sidecar.models.catalog import all_models, match_models, model_or_404
from sidecar.models.config import BUILTIN_LANG_IDENT, DEFER_DECOMPRESSION, DEFINITION_FIELDS, build_config
from sidecar.models.definition import check_whole, parse_part, part_exists
from sidecar.store.base import AlreadyExists, ModelDeployed
from sidecar.timevalue import iso_millis

_INCLUDES = ("hyperparameters", "definition", "feature_importance_baseline", "definition_status", "total_feature_importance")
_GENERATED = ("created_by", "version", "create_time", "model_size_bytes", "estimated_operations", "license_level")
ACKNOWLEDGED = {"acknowledged": True}
log = logging.getLogger(__name__)
_VOCABULARY_PARSER = "put_trained_model_vocabulary"
_VOCABULARY_FIELDS = {"vocabulary": fields.STRING_ARRAY, "merges": fields.STRING_ARRAY, "scores": fields.DOUBLE_ARRAY}
_DELETE_ATTEMPTS = 3  # each lost to a `_start` on another node that got in between the stop and the delete


async def put_model(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    request.params.str("timeout")
    defer_decompression = request.params.bool(DEFER_DECOMPRESSION)
    request.params.bool("wait_for_completion")
    request.params.finish()
    config = build_config(model_id, request.object(required=True), defer_decompression, ctx.settings.claims)
    await ctx.deployment_service.refuse_model_id(model_id)
    await asyncio.to_thread(check_model_id_is_not_an_alias, ctx.store, model_id)
    try:
        await asyncio.to_thread(ctx.store.create_model, config)
    except AlreadyExists:
        raise EsError(400, "resource_already_exists_exception", f"Trained machine learning model [{model_id}] already exists") from None
    task = next(iter(config.get("inference_config", {})), None)
    log.info(
        "model [%s] stored: model_type [%s], task [%s]", model_id, config.get("model_type"), task,
        extra=event("model-stored"),
    )  # fmt: skip
    return _render(config, exclude_generated=False, human=False)  # the config, never its definition


async def put_definition_part(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    request.params.finish()
    info, data = parse_part(request.path_params["part"], request.object(required=True))
    config = await model_or_404(ctx.store, model_id)
    if "location" not in config:
        raise status_exception(400, f"cannot put definition for model [{model_id}] as location is null")
    try:
        await asyncio.to_thread(ctx.store.put_definition_part, model_id, info, data)
    except AlreadyExists:
        raise part_exists(model_id, info.part) from None
    if info.part == info.total_parts - 1:  # eland sends the parts in order: one line when the last makes it whole
        await _log_if_whole(ctx, model_id)
    return ACKNOWLEDGED


async def _log_if_whole(ctx: Context, model_id: str) -> None:
    with contextlib.suppress(EsError):
        size = check_whole(model_id, await asyncio.to_thread(ctx.store.definition_parts, model_id))
        log.info("model [%s] definition complete: [%d] bytes", model_id, size, extra=event("model-definition-complete"))


async def put_vocabulary(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    request.params.finish()
    doc = _vocabulary(request.object(required=True))
    config = await model_or_404(ctx.store, model_id)
    if config.get("model_type") != "pytorch":
        raise status_exception(400, f"cannot put vocabulary for model [{model_id}] as it is not an NLP model")
    try:
        await asyncio.to_thread(ctx.store.put_vocabulary, model_id, doc)
    except AlreadyExists:
        raise EsError(400, "resource_already_exists_exception", f"Trained machine learning model [{model_id}] vocabulary already exists") from None
    return ACKNOWLEDGED


def _vocabulary(body: dict[str, Any]) -> dict[str, Any]:
    """PutTrainedModelVocabularyAction.Request's parser and validation: the document as stored."""
    fields.check_fields(_VOCABULARY_PARSER, body, _VOCABULARY_FIELDS)
    doc = {
        name: (fields.double_array if name == "scores" else fields.string_array)(_VOCABULARY_PARSER, name, body[name])
        for name in _VOCABULARY_FIELDS
        if name in body
    }
    if not doc.get("vocabulary"):
        raise validation_failed(["[vocabulary] must not be empty"])
    if "scores" in doc and len(doc["scores"]) != len(doc["vocabulary"]):
        raise validation_failed(["[scores] must have same length as [vocabulary]"])
    return doc


async def get_models(ctx: Context, request: EsRequest) -> Any:
    p = request.params
    expression = request.path_params.get("model_id", "_all")
    allow_no_match = p.bool("allow_no_match", True)
    includes = [i for i in (p.str("include") or "").split(",") if i]
    exclude_generated = p.bool("exclude_generated")
    p.bool("decompress_definition", True)
    start, size = p.int("from", 0) or 0, p.int("size", 100)
    tags = [t for t in (p.str("tags") or "").split(",") if t]
    human = p.bool("human")
    p.finish()
    unknown = [i for i in includes if i not in _INCLUDES]
    if unknown:
        raise status_exception(400, f"unknown [include] parameters [{', '.join(unknown)}]. Valid options are [{', '.join(_INCLUDES)}]")
    aliases = await asyncio.to_thread(ctx.store.model_aliases)
    models = match_models(await asyncio.to_thread(all_models, ctx.store), expression, allow_no_match, aliases)
    models = [m for m in models if all(t in m.get("tags", []) for t in tags)]
    if "definition_status" in includes:
        await _add_definition_status(ctx, models)
    page = with_aliases(models[start : start + (size if size is not None else 100)], aliases)
    definition = "definition" in includes
    return {"count": len(models), "trained_model_configs": [_render(m, exclude_generated, human, definition) for m in page]}


async def delete_model(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    request.params.time("timeout", "30s")
    force = request.params.bool("force")
    request.params.finish()
    if model_id == BUILTIN_LANG_IDENT["model_id"]:
        # Messages.INFERENCE_CANNOT_DELETE_ML_MANAGED_MODEL (wording from memory, UNCONFIRMED)
        raise status_exception(400, f"Unable to delete model [{model_id}] as it is required by machine learning")
    if not await asyncio.to_thread(_model_or_deployment_stored, ctx, model_id):
        raise model_not_found(model_id)
    if ctx.cluster is not None and not force:  # the cluster's ingest pipelines may use it
        await ctx.cluster.refuse_if_referenced(
            model_id, f"Cannot delete model [{model_id}] as it is still referenced by ingest processors; use force to delete the model"
        )
        for alias in await asyncio.to_thread(aliases_of, ctx.store, model_id):  # its aliases go with it
            await ctx.cluster.refuse_if_referenced(
                alias,
                f"Cannot delete model [{model_id}] as it has a model_alias [{alias}] that is still referenced by "
                "ingest processors; use force to delete the model",
            )
    if ctx.cluster is not None and (force or await asyncio.to_thread(ctx.store.get_deployment, model_id) is None):
        await ctx.cluster.model_deleting(model_id, force)  # its endpoint goes first: the cluster may refuse (409)
    if not await _delete_after_its_deployment(ctx, model_id, force):
        raise model_not_found(model_id)  # a DELETE on another node got there first
    log.info("model [%s] deleted", model_id, extra=event("model-deleted"))
    return ACKNOWLEDGED


def _model_or_deployment_stored(ctx: Context, model_id: str) -> bool:
    """A deployment that outlived its model (a node died half way through a `_start`) can still be deleted."""
    return ctx.store.get_model(model_id) is not None or ctx.store.get_deployment(model_id) is not None


async def _delete_after_its_deployment(ctx: Context, model_id: str, force: bool) -> bool:
    """Delete the model, stopping its deployment first if `force` allows; False if nothing was there.

    The store refuses to delete a deployed model, so a `_start` on another node that gets in between the stop and
    the delete sends this round again rather than leaving a deployment without its model.
    """
    stopped = False
    for _ in range(_DELETE_ATTEMPTS):
        if await asyncio.to_thread(ctx.store.get_deployment, model_id) is not None:
            if not force:
                break
            await ctx.deployments.stop(model_id)
            stopped = True
        try:
            return await asyncio.to_thread(ctx.store.delete_model, model_id) or stopped
        except ModelDeployed:
            continue
    raise status_exception(409, f"Cannot delete model [{model_id}] as it is currently deployed; use force to delete the model")


async def _add_definition_status(ctx: Context, models: list[dict[str, Any]]) -> None:
    if len(models) > 1:
        raise status_exception(400, "Getting the model download status is not supported when getting more than one model")
    for model in models:
        if model.get("model_type") != "pytorch":
            raise status_exception(400, "Definition status is only relevant to PyTorch model types")
        parts = await asyncio.to_thread(ctx.store.definition_parts, model["model_id"])
        try:
            check_whole(model["model_id"], parts)
            model["fully_defined"] = True
        except EsError:
            model["fully_defined"] = False


def _render(config: dict[str, Any], exclude_generated: bool, human: bool, definition: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if (exclude_generated and key in _GENERATED) or (key in DEFINITION_FIELDS and not definition):
            continue
        if human and key == "create_time":
            out["create_time_string"] = iso_millis(value)
        if human and key == "model_size_bytes":
            out["model_size"] = byte_size(value)
        out[key] = value
    return out
