"""(b) and (c): load a node's `_infer` with wrk, every document a text it has not seen, and read throughput and
latency percentiles."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

_LUA = """
local texts = {%s}
local docs_per_request = %d
local run = "%s"
local threads = 0
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function setup(thread)
  threads = threads + 1
  thread:set("thread", threads)
end
request = function()
  i = i + 1
  local docs = {}
  for k = 1, docs_per_request do
    local text = texts[((i + k) %% #texts) + 1]
    docs[k] = '{"text_field":' .. text .. ' (#' .. run .. '-' .. thread .. '-' .. i .. '-' .. k .. ')"}'
  end
  return wrk.format(nil, nil, nil, '{"docs":[' .. table.concat(docs, ",") .. ']}')
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(url: str, model_id: str, texts: list[str], docs_per_request: int, connections: int, seconds: int) -> dict[str, float]:
    """Run wrk with one thread per 32 connections (wrk itself stays cheap) and parse its report."""
    # each document's text made unique (`benchmarks.texts.numbered`'s form): run, wrk thread, request, document;
    # the Lua gets each text as the JSON string's opening, to which it adds the number and the closing quote
    openings = ", ".join(json.dumps(json.dumps(text)[:-1]) for text in texts)
    lua = _LUA % (openings, docs_per_request, time.time_ns())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    threads = max(1, min(2, connections // 32))
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "30s",
               "-s", script.name, f"{url}/_ml/trained_models/{model_id}/_infer"]  # fmt: skip
    report = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    requests_per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    return {
        "docs_per_s": requests_per_s * docs_per_request,
        "p50_ms": _percentile(report, "50%"),
        "p99_ms": _percentile(report, "99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _percentile(report: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s|m)\s*$", report, re.M).groups()
    return float(value) * _UNITS[unit]
