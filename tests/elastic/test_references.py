"""Which ingest pipelines use a model: an `inference` processor naming it, at any depth."""

from sidecar.elastic.references import referencing


def inference(model_id):
    return {"inference": {"model_id": model_id, "input_output": {"input_field": "body", "output_field": "ml.out"}}}


def test_processors_at_any_depth_count():
    pipelines = {
        "top": {"processors": [{"set": {"field": "a", "value": 1}}, inference("m")]},
        "pipeline_on_failure": {"processors": [{"set": {"field": "a", "value": 1}}], "on_failure": [inference("m")]},
        "processor_on_failure": {"processors": [{"set": {"field": "a", "value": 1, "on_failure": [inference("m")]}}]},
        "foreach": {"processors": [{"foreach": {"field": "docs", "processor": inference("m")}}]},
        "other_model": {"processors": [inference("m2")]},
        "no_inference": {"processors": [{"set": {"field": "model_id", "value": "m"}}]},
    }
    assert referencing(pipelines, "m") == ["foreach", "pipeline_on_failure", "processor_on_failure", "top"]
    assert referencing(pipelines, "m2") == ["other_model"]
    assert referencing({}, "m") == []
