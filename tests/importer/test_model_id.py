import pytest

from sidecar.importer.model_id import default_model_id


@pytest.mark.parametrize(
    ("hub_model_id", "expected"),
    [
        ("/x/y/ner", "x__y__ner"),
        ("dslim/bert-base-NER", "dslim__bert-base-ner"),
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers__all-minilm-l6-v2"),
        ("models\\My Model", "models__my__model"),
        ("tab\there", "tab__here"),
        ("already_valid", "already_valid"),
    ],
)
def test_separators_become_double_underscores_and_case_is_lowered(hub_model_id: str, expected: str) -> None:
    assert default_model_id(hub_model_id) == expected


def test_long_ids_keep_their_last_64_characters() -> None:
    path = "/data/" + "deep/" * 20 + "distilbert-base-uncased-finetuned-sst-2-english"
    model_id = default_model_id(path)
    assert len(model_id) == 64
    assert model_id.endswith("__distilbert-base-uncased-finetuned-sst-2-english")


def test_a_leading_double_underscore_left_by_the_cut_is_dropped() -> None:
    # the 64-character cut lands just before a separator, leaving "__" first
    path = "/parent/" + "m" * 62
    assert default_model_id(path) == "m" * 62
