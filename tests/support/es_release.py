"""What each Elasticsearch release the doubles imitate can do: one property per fact, each naming the class (or
change) in Elasticsearch's source that decides it. Where the exact release of a change was not pinned down, the
comment says so and gives the release the double assumes."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The releases the Elasticsearch-facing tests run against (a late patch of each minor).
VERSIONS = ("8.12.2", "8.13.4", "8.15.5", "8.18.8", "8.19.6", "9.0.7", "9.1.5", "9.2.1")
# A few that tell the slow suites apart: no one-segment GET and no `force` (8.12), hugging_face with rate_limit and
# the license check (9.0), custom (9.1).
REPRESENTATIVE = ("8.12.2", "9.0.7", "9.1.5")


@dataclass(frozen=True)
class Release:
    number: str

    @property
    def parsed(self) -> tuple[int, int, int]:
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", self.number)
        assert match, self.number
        major, minor, patch = (int(part) for part in match.groups())
        return major, minor, patch

    @property
    def major(self) -> int:
        return self.parsed[0]

    def since(self, major: int, minor: int) -> bool:
        return self.parsed[:2] >= (major, minor)

    @property
    def compatible_majors(self) -> tuple[int, int]:
        """RestCompatibleVersionHelper: a request may name this major or the one before in `compatible-with`."""
        return self.major - 1, self.major

    @property
    def one_segment_get(self) -> bool:
        """RestGetInferenceModelAction: `GET _inference/<id>` from 8.13 ("Make task_type optional"); 8.12 routes only
        `_inference/<task_type>/<id>` and `_inference/_all`."""
        return self.since(8, 13)

    @property
    def listing(self) -> tuple[str, str]:
        """GetInferenceModelAction.Response / ModelConfigurations: `models` + `model_id` in 8.12-8.13, then
        `endpoints` + `inference_id`."""
        return ("endpoints", "inference_id") if self.since(8, 14) else ("models", "model_id")

    @property
    def checks_license(self) -> bool:
        """TransportPutInferenceModelAction checks InferencePlugin.INFERENCE_API_FEATURE (enterprise) from 8.18/9.0."""
        return self.since(8, 18)

    @property
    def services(self) -> frozenset[str]:
        """InferencePlugin's services: `hugging_face` and `openai` from 8.12; CustomService in 8.19.x and 9.1+."""
        custom = (8, 19) <= self.parsed[:2] < (9, 0) or self.since(9, 1)
        return frozenset({"hugging_face", "openai", *(("custom",) if custom else ())})

    @property
    def hugging_face_rate_limit(self) -> bool:
        """HuggingFaceServiceSettings reads `rate_limit` (RateLimitSettings) from 8.15 (release assumed; the setting
        is documented from 8.15)."""
        return self.since(8, 15)

    @property
    def paces(self) -> bool:
        """RequestExecutorService's per-endpoint RateLimiter came with the `rate_limit` settings (assumed 8.15); before,
        its queue hands requests to the HTTP client's pool as fast as they come."""
        return self.since(8, 15)

    @property
    def delete_parameters(self) -> frozenset[str]:
        """RestDeleteInferenceEndpointAction: `force` and `dry_run` from 8.15; earlier the DELETE takes none and does
        not look for references."""
        return frozenset({"force", "dry_run"}) if self.since(8, 15) else frozenset()

    @property
    def checks_semantic_text(self) -> bool:
        """TransportDeleteInferenceEndpointAction refuses an endpoint a `semantic_text` mapping uses, as it refuses one
        a pipeline uses (after 8.15: assumed from 8.16; 8.18+ certainly)."""
        return self.since(8, 16)

    @property
    def max_attempts(self) -> int | None:
        """RetryingHttpSender: from 8.15 at most 3 tries in all within RetrySettings' timeout (`MAX_RETIES = 3`,
        checked against a count each try increments, the first included); before, RetryableAction retries as long
        as the timeout (30 s) allows."""
        return 3 if self.since(8, 15) else None
