"""Each REST caller's own credentials, judged by the cluster, refused with the cluster's own 401 and 403 bodies.

The caller's `Authorization` header goes to `POST _security/user/_has_privileges` with the route's action and the
privileges that grant it: asked about an action name, Elasticsearch checks that `<action>*` is a subset of the
caller's role (ClusterPrivilegeResolver.resolve, RBACEngine), which a privilege holding the exact action name
(`manage_inference` holds `.../deployment/start`, `monitor_inference` `.../deployment/infer`) does not satisfy though
it grants the action. So the caller passes when any of the names is granted: the action (wildcard roles and
patterns), or a privilege that grants it (the list Elasticsearch names in its refusal). A refusal
is worded as Elasticsearch words it (`AuthorizationDenialMessages`), which needs `GET _security/_authenticate` for
the user's roles. Verdicts are kept 30 s per (header hash, action); failed authentications are not kept.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from starlette.requests import Request

from sidecar.cluster.forward import FORWARDED_HEADER
from sidecar.elastic.client import call
from sidecar.elastic.privileges import INFER, Action
from sidecar.elastic.secret import bearer_matches
from sidecar.errors import EsError, status_exception

if TYPE_CHECKING:
    from sidecar.elastic.link import ClusterLink

_TTL_S = 30.0
_MAX_VERDICTS = 10_000
_HAS_PRIVILEGES = "/_security/user/_has_privileges"
# What Elasticsearch 8.x/9.x advertises with a 401 (DefaultAuthenticationFailureHandler, default realms)
WWW_AUTHENTICATE = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]


class Guard:
    def __init__(self, link: ClusterLink, secret: str) -> None:
        self._link = link
        self._secret = secret
        self._verdicts: dict[tuple[str, str], tuple[float, EsError | None]] = {}

    async def check(self, http: Request, action: Action) -> None:
        """Pass, or raise the 401/403 the cluster would give for `action` (503 when it cannot be asked).

        A peer node forwarding an `_infer` passes with the shared secret (nodes of one store share `--callback-secret`).
        """
        if (
            action is INFER
            and FORWARDED_HEADER in http.headers
            and bearer_matches(http.headers.get("authorization"), self._secret)
        ):
            return
        info = await self._link.current()
        if not info.security:
            self._link.refuse_open_exposure()
            return
        uri = _request_uri(http)
        header = http.headers.get("authorization")
        if not header:
            raise missing_credentials(uri)
        denial = await self._verdict(header, action, uri)
        if denial is not None:
            raise denial

    async def _verdict(self, header: str, action: Action, uri: str) -> EsError | None:
        key = (hashlib.sha256(header.encode()).hexdigest(), action.name)
        now = time.monotonic()
        kept = self._verdicts.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        denial = await self._ask(header, action, uri)
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[key] = (now + _TTL_S, denial)
        return denial

    async def _ask(self, header: str, action: Action, uri: str) -> EsError | None:
        es = self._link.es
        try:
            names = [action.name, *action.granted_by.split(",")]
            answer = await call(es, "POST", _HAS_PRIVILEGES, {"cluster": names}, authorization=header)
            if any(answer.get("cluster", {}).values()):
                return None
            return forbidden(action, await call(es, "GET", "/_security/_authenticate", authorization=header))
        except EsError as error:
            if error.status == 401:
                raise _for_this_request(error, uri) from None
            raise
        except TransportError as exc:
            raise status_exception(
                503, f"cannot check credentials with the Elasticsearch cluster [{self._link.url}]: {exc}"
            ) from None


def missing_credentials(uri: str) -> EsError:
    reason = f"missing authentication credentials for REST request [{uri}]"
    return EsError(401, "security_exception", reason, metadata={"header": {"WWW-Authenticate": WWW_AUTHENTICATE}})


def forbidden(action: Action, who: dict[str, Any]) -> EsError:
    """`action [a] is unauthorized for user [u] with effective roles [r], this action is granted by ...`."""
    reason = f"action [{action.name}] is unauthorized for {_subject(who)}, this action is granted by the cluster privileges [{action.granted_by}]"
    return EsError(403, "security_exception", reason)


def _subject(who: dict[str, Any]) -> str:
    """API keys and service accounts have no roles to list; users do (sorted, as the cluster prints them)."""
    user = f"user [{who.get('username')}]"
    if who.get("authentication_type") == "api_key":
        return f"API key id [{who.get('api_key', {}).get('id')}] of {user}"
    if str(who.get("token", {}).get("type", "")).startswith("_service_account"):
        return f"service account [{who.get('username')}]"
    return f"{user} with effective roles [{','.join(sorted(who.get('roles', [])))}]"


def _for_this_request(error: EsError, uri: str) -> EsError:
    """The cluster's 401 names the `_has_privileges` request; the caller made this one."""
    reason = error.reason.replace(f"[{_HAS_PRIVILEGES}]", f"[{uri}]")
    return EsError(401, error.type, reason, error.caused_by, error.metadata)


def _request_uri(http: Request) -> str:
    """RestRequest.uri(): the raw path and query string."""
    path = http.scope.get("raw_path", http.url.path.encode()).decode("latin-1")
    query = http.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path
