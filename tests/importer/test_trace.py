from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from sidecar.errors import EsError
from sidecar.importer import TASK_TYPES
from sidecar.importer.model_id import default_model_id
from sidecar.importer.trace import TASKS, TracedModel, trace_model
from tests.support.models import NER_LABELS, tiny_bert, tiny_sentence_bert

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

SHORT = "Hi"
MEDIUM = "John Smith works for Google in London."
LONG = " ".join(["Mary and her friends went to the new market in the city of Berlin."] * 12)  # > 128 pieces
SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "The new movie is awesome, everybody loved it!",
    "Stock markets fell sharply in Tokyo on Monday.",
    "Ok.",
]


def ml_inputs(model_dir: Path, texts: list[str], max_length: int = 128) -> tuple[torch.Tensor, ...]:
    """The four int64 tensors Elasticsearch sends a BERT model, rows right-padded to the longest."""
    batch = AutoTokenizer.from_pretrained(model_dir)(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    ids = batch["input_ids"]
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    return ids, batch["attention_mask"], torch.zeros_like(ids), positions


def run(traced: TracedModel, inputs: tuple[torch.Tensor, ...]) -> object:
    with torch.no_grad():
        return torch.jit.load(str(traced.definition))(*inputs)


BATCHES = [[SHORT], [MEDIUM], [LONG], [SHORT, LONG, MEDIUM], [MEDIUM, SHORT, MEDIUM + " " + MEDIUM]]


@pytest.mark.parametrize("texts", BATCHES, ids=["short", "medium", "max-length", "3-mixed", "3-medium"])
def test_ner_logits_equal_the_hf_model(traced_ner: TracedModel, tiny_ner_dir: Path, texts: list[str]) -> None:
    inputs = ml_inputs(tiny_ner_dir, texts)
    output = run(traced_ner, inputs)
    with torch.no_grad():
        expected = AutoModelForTokenClassification.from_pretrained(tiny_ner_dir)(
            input_ids=inputs[0], attention_mask=inputs[1]
        ).logits
    assert isinstance(output, tuple)
    assert output[0].shape == (len(texts), inputs[0].shape[1], len(NER_LABELS))
    torch.testing.assert_close(output[0], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("texts", BATCHES, ids=["short", "medium", "max-length", "3-mixed", "3-medium"])
def test_classifier_logits_equal_the_hf_model(
    traced_classifier: TracedModel, tiny_classifier_dir: Path, texts: list[str]
) -> None:
    inputs = ml_inputs(tiny_classifier_dir, texts)
    output = run(traced_classifier, inputs)
    with torch.no_grad():
        expected = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir)(
            input_ids=inputs[0], attention_mask=inputs[1]
        ).logits
    assert isinstance(output, tuple)
    assert output[0].shape == (len(texts), 2)
    torch.testing.assert_close(output[0], expected, atol=1e-4, rtol=0)


def test_padding_does_not_change_a_row(traced_ner: TracedModel, tiny_ner_dir: Path) -> None:
    alone = run(traced_ner, ml_inputs(tiny_ner_dir, [SHORT]))[0][0]
    batched = run(traced_ner, ml_inputs(tiny_ner_dir, [SHORT, MEDIUM]))[0][0]
    torch.testing.assert_close(batched[: alone.shape[0]], alone, atol=1e-4, rtol=0)


def test_minilm_embeddings_match_sentence_transformers(traced_minilm: TracedModel, minilm_dir: Path) -> None:
    expected = torch.from_numpy(SentenceTransformer(str(minilm_dir), device="cpu").encode(SENTENCES))
    embeddings = run(traced_minilm, ml_inputs(minilm_dir, SENTENCES, max_length=512))
    one = run(traced_minilm, ml_inputs(minilm_dir, SENTENCES[:1], max_length=512))
    assert embeddings.shape == (len(SENTENCES), 384)
    assert torch.nn.functional.cosine_similarity(embeddings, expected).min() >= 0.999
    assert torch.nn.functional.cosine_similarity(one, expected[:1]).item() >= 0.999
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(len(SENTENCES)))


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", False), ("cls", True), ("max", True)])
def test_pooling_and_normalize_follow_the_sentence_transformers_modules(
    tmp_path: Path, pooling: str, normalize: bool
) -> None:
    model_dir = tiny_sentence_bert(tmp_path / "st", pooling, normalize)
    traced = trace_model(model_dir, "text_embedding", tmp_path / "traced")
    expected = torch.from_numpy(SentenceTransformer(str(model_dir), device="cpu").encode(SENTENCES))
    embeddings = run(traced, ml_inputs(model_dir, SENTENCES))
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-4)
    assert traced.config["inference_config"]["text_embedding"]["embedding_size"] == 32


def test_ner_config_is_the_body_eland_sends(traced_ner: TracedModel, tiny_ner_dir: Path) -> None:
    config = traced_ner.config
    assert list(config) == ["description", "inference_config", "input", "metadata", "model_type"]
    assert config["description"] == f"Model {tiny_ner_dir} for task type 'ner'"
    assert config["inference_config"] == {
        "ner": {
            "tokenization": {"bert": {"max_sequence_length": 128, "do_lower_case": True}},
            "classification_labels": ["O", "B_PER", "I_PER", "B_LOC", "I_LOC", "B_ORG", "I_ORG", "B_MISC", "I_MISC"],
        }
    }
    assert list(config["inference_config"]["ner"]["tokenization"]["bert"]) == ["max_sequence_length", "do_lower_case"]
    assert config["input"] == {"field_names": ["text_field"]}
    assert config["model_type"] == "pytorch"


def test_classifier_config_carries_its_labels_in_id_order(traced_classifier: TracedModel) -> None:
    options = traced_classifier.config["inference_config"]["text_classification"]
    assert options["classification_labels"] == ["NEGATIVE", "POSITIVE"]
    assert options["tokenization"] == {"bert": {"max_sequence_length": 128, "do_lower_case": True}}


def test_embedding_config_has_the_embedding_size_and_no_labels(traced_minilm: TracedModel) -> None:
    assert traced_minilm.config["inference_config"] == {
        "text_embedding": {
            "tokenization": {"bert": {"max_sequence_length": 256, "do_lower_case": True}},
            "embedding_size": 384,
        }
    }


def test_memory_metadata(traced_ner: TracedModel, traced_minilm: TracedModel) -> None:
    minilm = traced_minilm.config["metadata"]
    # 22.6M float32 parameters (the pooler dropped) plus BERT's int64 position/type buffers
    assert 90_000_000 < minilm["per_deployment_memory_bytes"] < 91_000_000
    for metadata in (traced_ner.config["metadata"], minilm):
        assert list(metadata) == ["per_deployment_memory_bytes", "per_allocation_memory_bytes"]
        assert all(isinstance(value, int) and value > 0 for value in metadata.values())
    assert minilm["per_allocation_memory_bytes"] > 10 * traced_ner.config["metadata"]["per_allocation_memory_bytes"]


def test_vocabulary_lists_tokens_by_id(traced_minilm: TracedModel, minilm_dir: Path) -> None:
    vocabulary = traced_minilm.vocabulary["vocabulary"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    assert list(traced_minilm.vocabulary) == ["vocabulary"]
    assert len(vocabulary) == 30522
    assert [tokenizer.convert_tokens_to_ids(token) for token in vocabulary[:2000:97]] == list(range(0, 2000, 97))
    assert vocabulary[0] == "[PAD]" and vocabulary[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_graph_takes_four_positional_inputs(traced_ner: TracedModel) -> None:
    graph = torch.jit.load(str(traced_ner.definition)).graph
    assert len(list(graph.inputs())) == 1 + 4  # self, then input_ids, attention_mask, token types, positions


def test_model_id_defaults_to_elands_derivation(traced_ner: TracedModel, tiny_ner_dir: Path) -> None:
    assert traced_ner.model_id == default_model_id(str(tiny_ner_dir))


def test_options_override_the_id_and_the_length(tiny_classifier_dir: Path, tmp_path: Path) -> None:
    traced = trace_model(
        tiny_classifier_dir, "text_classification", tmp_path, model_id="sentiment", max_model_input_length=64
    )
    assert traced.model_id == "sentiment"
    assert traced.config["inference_config"]["text_classification"]["tokenization"]["bert"]["max_sequence_length"] == 64
    assert run(traced, ml_inputs(tiny_classifier_dir, [SHORT, MEDIUM], max_length=64))[0].shape == (2, 2)


def test_quantized_trace_holds_int8_weights(tiny_ner_dir: Path, tmp_path: Path) -> None:
    traced = trace_model(tiny_ner_dir, "ner", tmp_path, quantize=True)
    inputs = ml_inputs(tiny_ner_dir, [MEDIUM, SHORT])
    assert "quantized::linear_dynamic" in str(torch.jit.load(str(traced.definition)).graph)
    assert run(traced, inputs)[0].shape == (2, inputs[0].shape[1], len(NER_LABELS))


def test_the_command_line_offers_every_traceable_task() -> None:
    assert sorted(TASK_TYPES) == sorted(TASKS)


def test_unknown_task_is_an_illegal_argument(tiny_ner_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EsError) as raised:
        trace_model(tiny_ner_dir, "fill_mask", tmp_path)
    assert raised.value.type == "illegal_argument_exception"
    assert "fill_mask" in raised.value.reason


def test_a_head_the_checkpoint_lacks_is_refused_unless_forced(tmp_path: Path) -> None:
    encoder = tiny_bert(tmp_path / "encoder", "pass_through", NER_LABELS)  # a BertModel: no token classifier
    with pytest.raises(EsError) as raised:
        trace_model(encoder, "ner", tmp_path / "refused", name="acme/encoder")
    assert raised.value.type == "illegal_argument_exception"
    assert raised.value.reason.startswith("[acme/encoder] has no trained weights for ['classifier.bias', 'classifier")
    assert not (tmp_path / "refused").exists()
    traced = trace_model(encoder, "ner", tmp_path / "forced", force=True)
    inputs = ml_inputs(encoder, [MEDIUM])
    assert run(traced, inputs)[0].shape == (1, inputs[0].shape[1], len(NER_LABELS))


def test_an_embedding_model_may_lack_the_pooler_it_does_not_use(tmp_path: Path) -> None:
    model_dir = tiny_sentence_bert(tmp_path / "st")
    AutoModel.from_pretrained(model_dir, add_pooling_layer=False).save_pretrained(model_dir)
    traced = trace_model(model_dir, "text_embedding", tmp_path / "traced")
    expected = torch.from_numpy(SentenceTransformer(str(model_dir), device="cpu").encode(SENTENCES))
    torch.testing.assert_close(run(traced, ml_inputs(model_dir, SENTENCES)), expected, atol=1e-5, rtol=1e-4)


def test_an_explicit_length_overrides_the_sentence_transformers_one(minilm_dir: Path, tmp_path: Path) -> None:
    declared = json.loads((minilm_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    traced = trace_model(minilm_dir, "text_embedding", tmp_path, max_model_input_length=128)
    assert declared == 256
    assert traced.config["inference_config"]["text_embedding"]["tokenization"]["bert"]["max_sequence_length"] == 128


def _broken_config(model_dir: Path) -> None:
    (model_dir / "config.json").write_text("{not json")


def _no_weights(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()


def _remote_code(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="acme-net", auto_map={"AutoConfig": "acme.AcmeConfig", "AutoModel": "acme.AcmeModel"})
    (model_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "spoil", [_broken_config, _no_weights, _remote_code], ids=["broken-config", "no-weights", "remote-code"]
)
def test_a_directory_that_holds_no_usable_model_is_one_illegal_argument(tmp_path: Path, spoil) -> None:  # noqa: ANN001
    model_dir = tiny_bert(tmp_path / "model", "ner")
    spoil(model_dir)
    with pytest.raises(EsError) as raised:
        trace_model(model_dir, "ner", tmp_path / "traced")
    assert raised.value.type == "illegal_argument_exception"
    assert raised.value.reason.startswith(f"cannot load a model from [{model_dir}]: ")
    assert "\n" not in raised.value.reason
