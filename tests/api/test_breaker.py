"""The in-flight-requests breaker, on a node with the default limits: a flood of chunked bodies is refused with
Elasticsearch's 429 as it arrives, the node's memory stays bounded, and other callers are served meanwhile."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sidecar.api.wire import byte_size
from sidecar.settings import Settings
from tests.support.node import NodeProcess
from tests.support.raw_http import MiB, Answer, connect, head, read_answer

UPLOADS = 20
BODY = 100 * MiB
LIMIT = Settings().max_in_flight_bytes
REASON = re.compile(
    r"\[in_flight_requests\] Data too large, data for \[<http_request>\] would be \[(\d+)/(.+)\], "
    r"which is larger than the limit of \[(\d+)/(.+)\]"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("breaker") / "data").start()
    yield process
    process.stop()


def memory_kib(pid):
    """VmRSS (now) and VmHWM (the peak so far) of a process."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def chunked_upload(url, size=BODY, chunk=MiB):
    """POST `size` bytes in chunks as fast as the node takes them; its answer, whenever it comes."""
    with connect(url, timeout=60) as sock:
        sock.sendall(head("POST", "/_ml/trained_models/flood/_infer", {"Transfer-Encoding": "chunked"}))
        piece = b"%x\r\n" % chunk + b"a" * chunk + b"\r\n"
        try:
            for _ in range(size // chunk):
                sock.sendall(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused mid-body: the node stopped reading and closed
        return read_answer(sock)


def small_request(url, method, path, body=b""):
    with connect(url, timeout=10) as sock:
        sock.sendall(head(method, path, {"Content-Type": "application/json", "Content-Length": len(body)}) + body)
        return read_answer(sock)


def check_circuit_breaking(answer: Answer):
    error = answer.json()["error"]
    assert answer.status == 429
    assert list(error) == ["root_cause", "type", "reason", "bytes_wanted", "bytes_limit", "durability"]
    assert error["root_cause"] == [{k: v for k, v in error.items() if k != "root_cause"}]
    assert error["type"] == "circuit_breaking_exception"
    wanted, wanted_text, limit, limit_text = REASON.fullmatch(error["reason"]).groups()
    assert (int(wanted), int(limit)) == (error["bytes_wanted"], error["bytes_limit"])
    assert (wanted_text, limit_text) == (byte_size(int(wanted)), "128mb")
    assert error["bytes_limit"] == LIMIT < error["bytes_wanted"] <= LIMIT + MiB  # refused at the chunk that passed
    assert error["durability"] == "TRANSIENT"


def test_a_flood_of_chunked_bodies_is_refused_as_it_arrives_and_memory_stays_bounded(node):
    pid = node.process.pid
    rss_before, _ = memory_kib(pid)
    served, flooding = [], threading.Event()
    flooding.set()

    def probe():  # a caller with nothing to do with the flood
        while flooding.is_set():
            started = time.monotonic()
            status = small_request(node.url, "GET", "/").status
            body = small_request(node.url, "POST", "/_ml/trained_models/nope/_infer", b'{"docs":[{"t":"x"}]}')
            served.append((status, body.status, time.monotonic() - started))
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(UPLOADS) as pool:
            answers = list(pool.map(lambda _: chunked_upload(node.url), range(UPLOADS)))
    finally:
        flooding.clear()
        prober.join()
    elapsed = time.monotonic() - started
    rss_after, peak = memory_kib(pid)
    growth_mib = (peak - rss_before) / 1024
    print(
        f"\n{UPLOADS} x {BODY // MiB} MiB chunked in {elapsed:.1f}s: RSS before {rss_before // 1024} MiB, "
        f"peak {peak // 1024} MiB (growth {growth_mib:.0f} MiB), after {rss_after // 1024} MiB; "
        f"answers {sorted(a.status for a in answers)}; {len(served)} probes, slowest {max(s[2] for s in served):.2f}s"
    )
    assert growth_mib < 512
    refused = [a for a in answers if a.status == 429]
    assert refused
    for answer in refused:
        check_circuit_breaking(answer)
    assert all(a.status in (400, 429) for a in answers)  # the bodies that fit reach the route: not JSON
    assert served and all(get == 200 and small in (404, 429) and took < 5 for get, small, took in served)
    assert any(small == 404 for _, small, _ in served)


def test_refused_bytes_are_released(node):
    """After the flood, a body of the largest size goes through the breaker again."""
    answer = chunked_upload(node.url, size=BODY)
    assert answer.status == 400
    assert answer.json()["error"]["type"] == "x_content_parse_exception"
