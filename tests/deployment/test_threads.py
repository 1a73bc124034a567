import pytest

from sidecar.deployment.threads import effective_threads, plan


@pytest.mark.parametrize(
    ("inference", "model", "hw", "expected"),
    [
        (1, 1, 2, (1, 1)),
        (1, 2, 2, (1, 2)),  # the sum 3 > 2 lowers inference_threads to max(1, 0)
        (2, 1, 2, (1, 1)),  # 2 is not greater than 2; the sum is, so inference drops to 1
        (3, 1, 2, (1, 1)),  # greater than hw: one less than hw
        (8, 8, 16, (8, 8)),
        (16, 2, 16, (14, 2)),
        (17, 1, 16, (15, 1)),
        (1, 1, 1, (1, 1)),
        (4, 4, 4, (1, 4)),
    ],
)
def test_the_seeds_rule_literally(inference, model, hw, expected):
    assert effective_threads(inference, model, hw) == expected


def test_workers_get_cores_of_their_own():
    layout = plan(2, 2, [0, 1, 2, 3, 4, 5])
    assert layout.worker_cores == ((0, 1), (2, 3))
    assert layout.reason == ""


def test_too_many_workers_share_cores_round_robin_and_say_so():
    layout = plan(3, 3, list(range(6)))  # the sum 6 is allowed, the product 9 is not available
    assert (layout.inference_threads, layout.model_threads) == (3, 3)
    assert layout.worker_cores == ((0, 1, 2), (3, 4, 5), (0, 1, 2))
    assert layout.reason == (
        "model_threads [3] x inference_threads [3] exceeds the [6] usable cores; workers share cores round robin"
    )


def test_a_lowered_value_says_what_was_asked_and_what_runs():
    assert plan(8, 1, [0, 1]).reason == "inference_threads [8] lowered to [1] for the [2] usable cores"
    assert plan(1, 4, [0, 1]).reason == "model_threads [4] lowered to [1] for the [2] usable cores"
    both = plan(4, 4, [0, 1, 2, 3])  # (1, 4): model_threads stays, inference_threads drops to fit the sum
    assert both.reason == "inference_threads [4] lowered to [1] for the [4] usable cores"
