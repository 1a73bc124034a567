"""A request's head is bounded and its bytes must keep coming; a refused body is never read. Sent over bare sockets
to a real node, because no HTTP client sends such requests."""

import time

import pytest

from tests.support.node import NodeProcess
from tests.support.raw_http import MiB, answered, closed_within, connect, head, read_answer, send_until_refused

SECRET = "callback-secret-for-limits"
READ_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 1


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    args = ("--callback-secret", SECRET, "--http-read-timeout", f"{READ_TIMEOUT_S}s")
    args += ("--http-idle-timeout", f"{IDLE_TIMEOUT_S}s")
    process = NodeProcess(tmp_path_factory.mktemp("limits") / "data", *args).start()
    yield process
    process.stop()


def too_long(error_type, reason):
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": 400}


def test_a_head_over_16kb_is_refused_as_soon_as_it_passes_the_limit(node):
    with connect(node.url) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        sent = 0
        while not answered(sock, 0.05):
            assert sent < 1 * MiB, "no answer while the header grew"
            sock.sendall(b"a" * 4096)
            sent += 4096
        answer = read_answer(sock)
        assert sent < 64 * 1024  # answered within a few reads past 16 KiB, not once the header ended
        assert answer.status == 400
        assert answer.headers["x-elastic-product"] == "Elasticsearch"
        assert answer.json() == too_long("too_long_http_header_exception", "HTTP header is larger than 16384 bytes.")
        assert closed_within(sock, 5) is not None


def test_a_request_line_over_4kb_is_refused(node):
    with connect(node.url) as sock:
        sock.sendall(head("GET", "/_ml/trained_models/" + "m" * 5000))
        answer = read_answer(sock)
    assert answer.status == 400
    assert answer.json() == too_long("too_long_http_line_exception", "An HTTP line is larger than 4096 bytes.")


def test_heads_within_the_limits_are_served_one_after_another_on_a_connection(node):
    requests = [head("GET", "/", {"X-Padding": "a" * 15_000}), head("GET", "/_ml/trained_models/" + "m" * 4000)]
    statuses = []
    with connect(node.url) as sock:
        for request in requests * 2:
            sock.sendall(request)
            statuses.append(read_answer(sock).status)
    assert statuses == [200, 404, 200, 404]


def test_a_wrong_callback_secret_is_refused_before_the_body_is_read(node):
    with connect(node.url) as sock:
        headers = {"Authorization": "Bearer wrong", "Content-Type": "application/json", "Content-Length": 100 * MiB}
        sock.sendall(head("POST", "/v1/embeddings", headers) + b'{"input": "' + b"a" * 64 * 1024)
        answer = read_answer(sock)  # while 99.9 MiB of the body are still to come
        assert answer.status == 401
        assert answer.json()["error"]["message"] == "the callback secret is missing or wrong"
        # the node reads no more: the rest does not go out, and the connection closes
        assert send_until_refused(sock, b"a" * 64 * 1024, 100 * MiB) < 64 * MiB
        assert closed_within(sock, 10) is not None


def test_the_right_callback_secret_reaches_the_route(node):
    with connect(node.url) as sock:
        body = b'{"input": "hello", "model": "nowhere"}'
        headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        sock.sendall(head("POST", "/v1/embeddings", {**headers, "Content-Length": len(body)}) + body)
        answer = read_answer(sock)
    assert answer.status == 404
    assert answer.json()["error"]["type"] == "resource_not_found_exception"


@pytest.mark.parametrize(
    ("opening", "drop"),
    [
        (head("POST", "/_ml/trained_models/m/_infer", {"Content-Type": "application/json", "Content-Length": 10_000}), b" "),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow", b"w"),  # a header name that never ends
    ],
    ids=["body", "head"],
)
def test_a_request_that_trickles_in_is_cut_off(node, opening, drop):
    with connect(node.url) as sock:
        sock.sendall(opening)
        start = time.monotonic()
        try:
            while time.monotonic() - start < 5 * READ_TIMEOUT_S and not answered(sock):
                sock.sendall(drop)
                time.sleep(0.1)
        except OSError:
            pass  # the node closed the connection mid-trickle
        assert READ_TIMEOUT_S - 0.5 < time.monotonic() - start < 3 * READ_TIMEOUT_S
        assert closed_within(sock, 1) is not None


def test_idle_connections_are_closed(node):
    with connect(node.url) as silent, connect(node.url) as kept_alive:
        kept_alive.sendall(head("GET", "/"))
        assert read_answer(kept_alive).status == 200
        assert closed_within(kept_alive, 5 * IDLE_TIMEOUT_S) is not None  # keep-alive without a next request
        assert closed_within(silent, 3 * READ_TIMEOUT_S) is not None  # connected, never asked anything
