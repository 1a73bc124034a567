"""A node that claims 9.5 knows `byte_level_bpe`: stored as Elasticsearch's own test expects, and it runs."""

import pytest

from sidecar.importer.trace import TracedModel
from tests.support.deploy import infer, start, uploaded
from tests.support.node import module_node

node = module_node("--es-version", "9.5.0")

# byte_level_bpe_inference_config.yml in Elasticsearch's REST tests
YAML_CONFIG = {
    "description": "byte_level_bpe tokenization XContent REST coverage",
    "model_type": "pytorch",
    "inference_config": {"text_embedding": {"tokenization": {"byte_level_bpe": {
        "with_special_tokens": False, "add_prefix_space": True, "max_sequence_length": 256, "truncate": "first",
        "unk_token": "<unk>", "pad_token": "<pad>",
    }}}},
}  # fmt: skip


def test_put_and_get_as_elasticsearchs_test_expects(es):
    es.perform_request(
        "PUT", "/_ml/trained_models/byte_level_bpe_rest_config_model", body=YAML_CONFIG,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    [config] = es.ml.get_trained_models(model_id="byte_level_bpe_rest_config_model")["trained_model_configs"]
    assert config["model_id"] == "byte_level_bpe_rest_config_model"
    assert config["inference_config"]["text_embedding"]["tokenization"] == {"byte_level_bpe": {
        "do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 256, "truncate": "first",
        "span": -1, "add_prefix_space": True, "unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>",
        "eos_token": "</s>", "mask_token": "<mask>",
    }}  # fmt: skip


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """A TorchScript model that answers each row's token ids: what the worker's tokenizer gave it, seen from outside."""
    import torch

    class Echo(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return input_ids.unsqueeze(-1).float()

    path = tmp_path_factory.mktemp("echo") / "echo.pt"
    torch.jit.script(Echo()).save(str(path))
    return path


@pytest.fixture(scope="module")
def roberta_vocabulary(tmp_path_factory):
    from tests.support.models import tiny_tokenizer, uploaded_vocabulary

    return uploaded_vocabulary(tiny_tokenizer(tmp_path_factory.mktemp("roberta"), "roberta"))


def _pass_through(tokenization):
    return {"model_type": "pytorch", "input": {"field_names": ["text_field"]},
            "inference_config": {"pass_through": {"tokenization": tokenization}}}  # fmt: skip


def test_a_byte_level_bpe_deployment_tokenizes_with_its_named_tokens(node, es, echo, roberta_vocabulary):
    """The same vocabulary as `roberta`, and as `byte_level_bpe` with GPT-2 style names for its special tokens."""
    names = {"<s>": "<|bos|>", "</s>": "<|eos|>", "<pad>": "<|pad|>", "<unk>": "<|unk|>", "<mask>": "<|mask|>"}
    renamed = {**roberta_vocabulary, "vocabulary": [names.get(t, t) for t in roberta_vocabulary["vocabulary"]]}
    bpe = {"byte_level_bpe": {"add_prefix_space": True, "bos_token": "<|bos|>", "eos_token": "<|eos|>",
                              "pad_token": "<|pad|>", "unk_token": "<|unk|>", "mask_token": "<|mask|>"}}  # fmt: skip
    models = {
        "plain-roberta": TracedModel("plain-roberta", echo, _pass_through({"roberta": {"add_prefix_space": True}}), roberta_vocabulary),
        "bpe-roberta": TracedModel("bpe-roberta", echo, _pass_through(bpe), renamed),
    }
    for model in models.values():
        start(es, uploaded(node.url, model))
    [bpe_ids] = infer(es, "bpe-roberta", ["the city of paris <|mask|>"])
    [roberta_ids] = infer(es, "plain-roberta", ["the city of paris <mask>"])
    assert bpe_ids == roberta_ids
    ids = [int(row[0]) for row in bpe_ids["predicted_value"]]
    assert (renamed["vocabulary"][ids[0]], renamed["vocabulary"][ids[-1]]) == ("<|bos|>", "<|eos|>")
    assert "<|mask|>" in [renamed["vocabulary"][i] for i in ids]
