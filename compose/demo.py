"""The end of `just demo`: index a few documents through the two pipelines it installed and print what they wrote.

Reads ES_PORT and ELASTIC_PASSWORD from the environment (`just demo` loads compose/.env).
"""

from __future__ import annotations

import json
import os
from typing import Any

from elasticsearch import Elasticsearch

TEXTS = (
    "Marie Curie was born in Warsaw and did her research in Paris.",
    "The Acme Corporation opened an office in Berlin with Maria Garcia as its director.",
    "Elasticsearch keeps the documents; the sidecar nodes run the models.",
)
# index -> pipeline; the embeddings index gets its pipeline from the index template as `index.default_pipeline`
INDICES = {"demo-embeddings": None, "demo-entities": "conll03-ner"}


def main() -> None:
    es = Elasticsearch(
        f"http://127.0.0.1:{os.environ['ES_PORT']}", basic_auth=("elastic", os.environ["ELASTIC_PASSWORD"])
    )
    for index, pipeline in INDICES.items():
        for number, text in enumerate(TEXTS):
            es.index(index=index, id=str(number), document={"message": text}, pipeline=pipeline, refresh="wait_for")
        print(f"# {index}")
        for hit in es.search(index=index, sort=["_doc"])["hits"]["hits"]:
            print(json.dumps(shortened(hit["_source"]), indent=2))


def shortened(value: Any) -> Any:
    """Vectors cut to their first values, so that a document fits on a screen."""
    if isinstance(value, dict):
        return {key: shortened(item) for key, item in value.items()}
    if isinstance(value, list) and len(value) > 8 and all(isinstance(item, float) for item in value):
        return [*value[:4], f"... {len(value)} values"]
    return value


if __name__ == "__main__":
    main()
