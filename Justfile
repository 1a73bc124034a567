# Every command a person runs. `just` creates the virtualenv itself on first use.

venv := ".venv"
python := venv / "bin/python"
data_dir := env_var_or_default("SIDECAR_DATA_DIR", "data")

# Create the virtualenv: torch first, pinned, so the CPU wheel on the machine is used; then the project.
setup:
    test -x {{python}} || python3 -m venv {{venv}}
    {{python}} -m pip install --quiet --upgrade pip
    {{python}} -m pip install --quiet "torch==2.13.0"
    {{python}} -m pip install --quiet -e ".[test]"

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
