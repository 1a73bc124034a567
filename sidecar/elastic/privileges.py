"""The Elasticsearch action behind each REST route, as the cluster authorizes it.

Action names are Elasticsearch's transport actions (`InferModelAction.EXTERNAL_NAME`,
`StartTrainedModelDeploymentAction.NAME`, ...). `manage_ml` grants start, stop, put and delete, model aliases
included (`manage_inference` grants start and stop too, `monitor_inference` the deployment's `_infer`); `monitor_ml`
grants get, stats and `_infer` (`_infer` runs `cluster:monitor/xpack/ml/inference/infer`, inside `monitor_ml`'s
`cluster:monitor/xpack/ml/*`). How the guard asks about them: see `sidecar.elastic.guard`.
`granted_by` is the list a refusal names (`ClusterPrivilegeResolver.findPrivilegesThatGrant` order, Elasticsearch 9).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str
    granted_by: str


_MONITOR_ML = "monitor_ml,manage_ml,monitor,manage,all"
_MANAGE_ML = "manage_ml,manage,all"
_DEPLOYMENT = "manage_inference,manage_ml,manage,all"

MAIN = Action("cluster:monitor/main", "monitor,manage,all")
GET_MODELS = Action("cluster:monitor/xpack/ml/inference/get", _MONITOR_ML)
STATS = Action("cluster:monitor/xpack/ml/inference/stats/get", _MONITOR_ML)
INFER = Action("cluster:monitor/xpack/ml/inference/infer", _MONITOR_ML)
INFER_DEPLOYMENT = Action(
    "cluster:monitor/xpack/ml/trained_models/deployment/infer",
    "monitor_inference,monitor_ml,manage_inference,manage_ml,monitor,manage,all",
)
PUT_MODEL = Action("cluster:admin/xpack/ml/inference/put", _MANAGE_ML)
PUT_PART = Action("cluster:admin/xpack/ml/trained_models/part/put", _MANAGE_ML)
PUT_VOCABULARY = Action("cluster:admin/xpack/ml/trained_models/vocabulary/put", _MANAGE_ML)
DELETE_MODEL = Action("cluster:admin/xpack/ml/inference/delete", _MANAGE_ML)
PUT_MODEL_ALIAS = Action("cluster:admin/xpack/ml/inference/model_aliases/put", _MANAGE_ML)
DELETE_MODEL_ALIAS = Action("cluster:admin/xpack/ml/inference/model_aliases/delete", _MANAGE_ML)
START = Action("cluster:admin/xpack/ml/trained_models/deployment/start", _DEPLOYMENT)
STOP = Action("cluster:admin/xpack/ml/trained_models/deployment/stop", _DEPLOYMENT)
CLEAR_CACHE = Action("cluster:admin/xpack/ml/trained_models/deployment/clear_cache", _MANAGE_ML)
