import pytest

from sidecar.errors import EsError
from sidecar.timevalue import parse_time


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("20s", "20s"), ("60s", "1m"), ("90s", "1.5m"), ("1500ms", "1.5s"), ("1999ms", "1.9s"), ("61s", "1m"),
        ("120s", "2m"), ("3600s", "1h"), ("36h", "1.5d"), ("500ms", "500ms"), ("1m", "1m"), ("10S", "10s"),
        ("0", "0s"), ("-1", "-1"),
    ],
)  # fmt: skip
def test_prints_like_elasticsearch(text, printed):
    assert str(parse_time(text, "timeout")) == printed


def test_keeps_the_text_it_was_given():
    assert parse_time("60s", "timeout").text == "60s"
    assert parse_time("60s", "timeout").seconds == 60


@pytest.mark.parametrize(
    ("text", "reason", "cause"),
    [
        ("abc", "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized", None),
        ("10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized", None),
        ("10M", "failed to parse setting [timeout] with value [10M] as a time value: unit is missing or unrecognized", None),
        ("-5s", "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported", None),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported", 'For input string: "1.5"'),
        ("abcs", "failed to parse [abcs]", 'For input string: "abc"'),
    ],
)  # fmt: skip
def test_rejects_like_elasticsearch(text, reason, cause):
    with pytest.raises(EsError) as caught:
        parse_time(text, "timeout")
    assert (caught.value.status, caught.value.type, caught.value.reason) == (400, "illegal_argument_exception", reason)
    assert (caught.value.caused_by.reason if caught.value.caused_by else None) == cause
