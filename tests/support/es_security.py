"""The security side of the test double: users and API keys with cluster privileges, and how Elasticsearch judges
them (RBACEngine, ClusterPrivilegeResolver).

A role's cluster permission is the union of its privileges' action patterns (an automaton). A request for an action
is allowed when the action name is in it. `_has_privileges` resolves each name it is asked about
(ClusterPrivilegeResolver.resolve): a privilege name is that privilege's patterns, an action name becomes the pattern
`<action>*`; it answers true when that automaton is a subset of the role's (Operations.subsetOf). So a role holding
an exact action name (as `manage_inference` holds `.../deployment/start`) grants the action, but `_has_privileges`
asked with the action name answers false: `<action>*` holds names the role lacks.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from sidecar.errors import illegal_argument

# ClusterPrivilegeResolver's patterns for the privileges the tests grant. MANAGE_INFERENCE_PATTERN and
# MONITOR_INFERENCE_PATTERN as in 8.x/9.x main; the release that added the trained-model deployment actions to them
# was not pinned down, so every release here has them.
PRIVILEGE_PATTERNS = {
    "none": (),
    "all": ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*"),
    "manage": ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*"),
    "monitor": ("cluster:monitor/*",),
    "monitor_ml": ("cluster:monitor/xpack/ml/*",),
    "manage_ml": ("cluster:admin/xpack/ml/*", "cluster:monitor/xpack/ml/*"),
    "monitor_inference": (
        "cluster:monitor/xpack/inference*",
        "cluster:monitor/xpack/ml/trained_models/deployment/infer",
    ),
    "manage_inference": (
        "cluster:admin/xpack/inference/*",
        "cluster:monitor/xpack/inference*",
        "cluster:admin/xpack/ml/trained_models/deployment/start",
        "cluster:admin/xpack/ml/trained_models/deployment/stop",
        "cluster:monitor/xpack/ml/trained_models/deployment/infer",
    ),
    "manage_index_templates": (
        "indices:admin/template/*",
        "indices:admin/index_template/*",
        "cluster:admin/component_template/*",
    ),
    "manage_ingest_pipelines": ("cluster:admin/ingest/pipeline/*",),
}


def _covers(role: tuple[str, ...], pattern: str) -> bool:
    """Whether every name `pattern` matches is matched by one of the role's patterns. The patterns here have at most
    a trailing `*` beyond literal text, so a prefix pattern `p*` is covered only by a role pattern ending in `*`
    that matches `p` (its star then absorbs any suffix), and a literal by any role pattern matching it."""
    if pattern.endswith("*"):
        return any(r.endswith("*") and fnmatch.fnmatchcase(pattern[:-1], r) for r in role)
    return any(fnmatch.fnmatchcase(pattern, r) for r in role)


@dataclass
class Principal:
    username: str
    roles: list[str]
    privileges: list[str]
    api_key_id: str | None = None

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(p for name in self.privileges for p in PRIVILEGE_PATTERNS[name])

    def allowed(self, action: str) -> bool:
        """RBACEngine.authorizeClusterAction: the action name in the role's automaton."""
        return any(fnmatch.fnmatchcase(action, pattern) for pattern in self.patterns)

    def has_privilege(self, name: str) -> bool:
        """`_has_privileges` for one cluster entry: an action name as `<action>*`, a privilege name as its patterns,
        each a subset of the role's automaton."""
        if ":" in name:
            wanted: tuple[str, ...] = (name + "*",)
        elif name in PRIVILEGE_PATTERNS:
            wanted = PRIVILEGE_PATTERNS[name]
        else:
            raise illegal_argument(f"unknown cluster privilege [{name}]")
        return all(_covers(self.patterns, pattern) for pattern in wanted)
