"""The node check `sidecar import` makes before it traces anything."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sidecar.importer.upload import UploadError, check_node
from tests.support.loopback import LoopbackServer
from tests.support.node import free_port

ELASTIC_PRODUCT = {"X-Elastic-Product": "Elasticsearch"}


def serving(answer: Response) -> LoopbackServer:
    async def root(request: Request) -> Response:
        return answer

    return LoopbackServer(Starlette(routes=[Route("/{path:path}", root)]))


def test_a_node_that_refuses_the_caller_is_one_line_with_its_reason() -> None:
    # Elasticsearch's answer to a request without credentials (security_exception, 401)
    refusal = JSONResponse(
        {"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="security"', **ELASTIC_PRODUCT},
    )
    with serving(refusal) as server, pytest.raises(UploadError) as raised:
        check_node(server.url, "any")
    assert str(raised.value) == "security_exception [401]: missing authentication credentials"


@pytest.mark.parametrize("status", [200, 404])
def test_a_server_that_is_not_elasticsearch_is_one_line(status: int) -> None:
    with serving(PlainTextResponse("hello", status_code=status)) as server, pytest.raises(UploadError) as raised:
        url = server.url
        check_node(url, "any")
    assert str(raised.value) == f"{url} answers, but not as Elasticsearch or a sidecar node"


def test_nothing_listening_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UploadError) as raised:
        check_node(url, "any")
    assert str(raised.value).startswith(f"cannot reach {url}: ")
    assert "\n" not in str(raised.value)


def test_a_url_the_client_cannot_parse_is_one_line() -> None:
    with pytest.raises(UploadError) as raised:
        check_node("127.0.0.1:9700", "any")
    assert str(raised.value).startswith("cannot reach 127.0.0.1:9700: URL must include a 'scheme'")
