"""Elasticsearch's own tiny TorchScript test model: test data, as its test suites carry it.

The definition of `test_model` in x-pack's YAML REST test `ml/3rd_party_deployment.yml` (also `PyTorchModelIT`):
a traced module whose forward returns `torch.ones((input_ids.size()[0], 2))`; deployed as `pass_through` with BERT
tokenization, `_infer` on "my words" answers `{"predicted_value": [[1.0, 1.0]]}` in `PyTorchModelIT.testEvaluate`.
"""

from elasticsearch import Elasticsearch

SUPER_SIMPLE_BASE64 = (
    "UEsDBAAACAgAAAAAAAAAAAAAAAAAAAAAAAAUAA4Ac2ltcGxlbW9kZWwvZGF0YS5wa2xGQgoAWlpaWlpaWlpaWoACY19fdG9yY2hf"
    "XwpTdXBlclNpbXBsZQpxACmBfShYCAAAAHRyYWluaW5ncQGIdWJxAi5QSwcIXOpBBDQAAAA0AAAAUEsDBBQACAgIAAAAAAAAAAAA"
    "AAAAAAAAAAAdAEEAc2ltcGxlbW9kZWwvY29kZS9fX3RvcmNoX18ucHlGQj0AWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpa"
    "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWnWOMWvDMBCF9/yKI5MMrnHTQsHgjt2aJdlCEIp9SgWSTpykFvfXV1htaYds"
    "0nfv473JqhjhkAPywbhgUbzSnC02wwZAyqBYOUzIUUoY4XRe6SVr/Q8lVsYbf4UBLkS2kBk1aOIPxbOIaPVQtEQ8vUnZ/WlrSxTA"
    "+JCTNHMc4Ig+Eles+Jod+iR3N/jDDf74wxu4e/5+DmtE9mUyhdgFNq7bZ3ekehbruC6aTxS/c1rom6Z698WrEfIYxcn4JGTftLA7"
    "tzCnJeD41IJVC+U07kumUHw3E47Vqh+xnULeFisYLx064mV8UTZibWFMmX0p23wBUEsHCE0EGH3yAAAAlwEAAFBLAwQUAAgICAAA"
    "AAAAAAAAAAAAAAAAAAAAJwA5AHNpbXBsZW1vZGVsL2NvZGUvX190b3JjaF9fLnB5LmRlYnVnX3BrbEZCNQBaWlpaWlpaWlpaWlpa"
    "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWrWST0+DMBiHW6bOod/BGS94kKpo2Mwyox5x3pbgiXSAFtdR"
    "/nQu3IwHiZ9oX88CaeGu9tL0efq+v8P7fmiGA1wgTgoIcECZQqe6vmYD6G4hAJOcB1E8NazTm+ELyzY4C3Q0z8MsRwF+j4JlQUPE"
    "Eo5wjH0WB9hCNFqgpOCExZY5QnnEw7ME+0v8GuaIs8wnKI7RigVrKkBzm0lh2OdjkeHllG28f066vK6SfEypF60S+vuYt4gjj2fY"
    "r/uPrSvRv356TepfJ9iWJRN0OaELQSZN3FRPNbcP1PTSntMr0x0HzLZQjPYIEo3UaFeiISRKH0Mil+BE/dyT1m7tCBLwVO1MX4DK"
    "3bbuTlXuy8r71j5Aoho66udAoseOnrdVzx28UFW6ROuO/lT6QKKyo79VU54emj9QSwcInsUTEDMBAAAFAwAAUEsDBAAACAgAAAAA"
    "AAAAAAAAAAAAAAAAAAAZAAYAc2ltcGxlbW9kZWwvY29uc3RhbnRzLnBrbEZCAgBaWoACKS5QSwcIbS8JVwQAAAAEAAAAUEsDBAAA"
    "CAgAAAAAAAAAAAAAAAAAAAAAAAATADsAc2ltcGxlbW9kZWwvdmVyc2lvbkZCNwBaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpa"
    "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaMwpQSwcI0Z5nVQIAAAACAAAAUEsBAgAAAAAICAAAAAAAAFzqQQQ0AAAANAAAABQA"
    "AAAAAAAAAAAAAAAAAAAAAHNpbXBsZW1vZGVsL2RhdGEucGtsUEsBAgAAFAAICAgAAAAAAE0EGH3yAAAAlwEAAB0AAAAAAAAAAAAA"
    "AAAAhAAAAHNpbXBsZW1vZGVsL2NvZGUvX190b3JjaF9fLnB5UEsBAgAAFAAICAgAAAAAAJ7FExAzAQAABQMAACcAAAAAAAAAAAAA"
    "AAAAAgIAAHNpbXBsZW1vZGVsL2NvZGUvX190b3JjaF9fLnB5LmRlYnVnX3BrbFBLAQIAAAAACAgAAAAAAABtLwlXBAAAAAQAAAAZ"
    "AAAAAAAAAAAAAAAAAMMDAABzaW1wbGVtb2RlbC9jb25zdGFudHMucGtsUEsBAgAAAAAICAAAAAAAANGeZ1UCAAAAAgAAABMAAAAA"
    "AAAAAAAAAAAAFAQAAHNpbXBsZW1vZGVsL3ZlcnNpb25QSwYGLAAAAAAAAAAeAy0AAAAAAAAAAAAFAAAAAAAAAAUAAAAAAAAAagEA"
    "AAAAAACSBAAAAAAAAFBLBgcAAAAA/AUAAAAAAAABAAAAUEsFBgAAAAAFAAUAagEAAJIEAAAAAA=="
)
SUPER_SIMPLE_LENGTH = 1630  # `total_definition_length` in the YAML

# The YAML's setup for `test_model` and `another_test_model`, and Elasticsearch's test cleanup between cases
PASS_THROUGH_BERT = {"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}}
VOCABULARY = ["[PAD]", "[UNK]", "these", "are", "my", "words"]


def put_test_model(es: Elasticsearch, model_id: str) -> None:
    """PUT the config, the vocabulary and the one definition part, as the YAML's setup does."""
    es.ml.put_trained_model(
        model_id=model_id,
        description="simple model for testing",
        model_type="pytorch",
        inference_config=PASS_THROUGH_BERT,
    )
    es.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=VOCABULARY)
    es.ml.put_trained_model_definition_part(
        model_id=model_id,
        part=0,
        definition=SUPER_SIMPLE_BASE64,
        total_definition_length=SUPER_SIMPLE_LENGTH,
        total_parts=1,
    )


def clean_ml(es: Elasticsearch) -> None:
    """What Elasticsearch's REST test cleanup does after each case: stop every deployment, delete every model (and so
    every alias); the built-in `lang_ident_model_1` stays."""
    for stats in es.ml.get_trained_models_stats(model_id="_all", size=10_000)["trained_model_stats"]:
        if "deployment_stats" in stats:
            deployment_id = stats["deployment_stats"].get("deployment_id", stats["model_id"])
            es.options(ignore_status=404).ml.stop_trained_model_deployment(model_id=deployment_id, force=True)
    for config in es.ml.get_trained_models(model_id="_all", size=10_000)["trained_model_configs"]:
        if config["model_id"] != "lang_ident_model_1":
            es.ml.delete_trained_model(model_id=config["model_id"], force=True)
