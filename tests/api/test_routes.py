"""The route table: every route says what it asks of the caller, and a route that says nothing stops the start."""

import pytest

from sidecar.api.app import CALLBACK_SECRET, NONE, ROUTES, RouteSpec, build_route
from sidecar.api.routes import root
from sidecar.elastic.privileges import Action


def test_a_route_without_a_privilege_fails_at_startup():
    with pytest.raises(RuntimeError, match=r"route \[GET /x\] declares no privilege"):
        build_route(RouteSpec("/x", ("GET",), root.info, None))  # type: ignore[arg-type]


def test_a_misspelt_privilege_fails_too():
    with pytest.raises(RuntimeError):
        build_route(RouteSpec("/x", ("GET",), root.info, "nobody"))


def test_only_health_and_metrics_are_open_and_only_callbacks_take_the_secret():
    open_routes = [spec.path for spec in ROUTES if spec.privilege == NONE]
    secret_routes = sorted(spec.path for spec in ROUTES if spec.privilege == CALLBACK_SECRET)
    assert open_routes == ["/_sidecar/health", "/metrics"]
    assert secret_routes == ["/_sidecar/custom/{model_id}", "/_sidecar/hf/{model_id}", "/v1/embeddings"]
    assert all(isinstance(spec.privilege, Action) for spec in ROUTES if spec.privilege not in (NONE, CALLBACK_SECRET))


def test_every_route_is_built():
    assert [route.path for route in map(build_route, ROUTES)] == [spec.path for spec in ROUTES]
