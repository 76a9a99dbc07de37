"""Stream worker settings. Environment prefix `CALLSTREAM_STREAM_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream.durations import DAY_MS, HOUR_MS
from callstream.streams.clock import EventTimeBounds
from callstream.streams.pricing import DEFAULT_OVERRIDES, PRICE_PROFILES

SHIPPED_PRICES = "shipped"


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_STREAM_", extra="ignore")

    app_id: str = "callstream-stream"
    # Topic to consume: live raw events, or the replay topic for reprocessing history.
    source: Literal["raw", "replay"] = "raw"
    # Replay generation (e.g. the replay's start, epoch seconds): its window versions outrank
    # every older generation's, so a replay's recomputed windows replace the old documents.
    generation: int = Field(default=0, ge=0, lt=2**31)
    partitions: int = Field(default=6, ge=1)  # of the raw and partials topics
    # How long after a minute window's end its events still count as on time.
    grace_ms: int = Field(default=60_000, ge=0)
    # Event times are accepted from this long before their publication (older: dead-lettered; replay
    # history instead) to this long after it (clock skew). One absurd timestamp never moves the
    # stream time, dedup expiry, window retention or index creation.
    max_event_age_ms: int = Field(default=30 * DAY_MS, ge=60_000)
    max_clock_skew_ms: int = Field(default=5 * 60_000, ge=0)
    # A replay's range [from, to) in epoch ms: the bound that replaces age and skew for history.
    replay_from_ms: int | None = Field(default=None, ge=0)
    replay_to_ms: int | None = Field(default=None, ge=0)
    # Distinct names per raw partition and UTC day that keep their own windows; later ones are
    # aggregated under `other` (the calls keep their names). Bounds state under hostile input.
    max_models_per_day: int = Field(default=500, ge=1)
    max_providers_per_day: int = Field(default=100, ge=1)
    max_services_per_day: int = Field(default=500, ge=1)
    max_users_per_day: int = Field(default=5_000, ge=1)
    dedup_horizon_ms: int = Field(default=DAY_MS, ge=0)  # how long event ids are remembered
    # How long closed windows stay in state to take late corrections, per window size.
    retention_1m_ms: int = Field(default=6 * HOUR_MS, ge=0)
    retention_1h_ms: int = Field(default=2 * DAY_MS, ge=0)
    retention_1d_ms: int = Field(default=8 * DAY_MS, ge=0)
    flush_interval_ms: int = Field(default=1000, ge=10)  # how often changed windows are published
    max_pending_partials: int = Field(default=2000, ge=1)  # flush early after this many inputs
    enriched_max_bytes: int = Field(default=512 * 1024, ge=1024)  # split enriched messages above this
    # Override files, most specific first; "shipped" names the file that comes with callstream
    # (wherever it is installed), so a list that adds your own can keep it.
    price_files: list[Path] = Field(default_factory=list)
    # The named profile's files come after `price_files` (docs/pricing.md): `list` (the providers'
    # list prices from genai-prices, the default) or `gateway` (the shipped gateway sheet).
    price_profile: Literal["list", "gateway"] = "list"
    use_genai_prices: bool = True  # price models the override files lack from genai-prices
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    # /metrics (Prometheus) and /healthz; a port in use costs the endpoint, not the worker.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9461, ge=0, le=65535, description="0: any free port; unset: off")
    # An input partition this long without messages is checked for input its consumer left behind.
    input_quiet_s: float = Field(default=10.0, gt=0)
    stream_buffer_maxsize: int = Field(default=16, ge=1)  # messages (each a batch) buffered per partition
    # faust's working directory (its table metadata), one subdirectory per app id.
    data_dir: Path = Path(".callstream/stream")

    @field_validator("price_files", mode="after")
    @classmethod
    def _shipped(cls, paths: list[Path]) -> list[Path]:
        return [DEFAULT_OVERRIDES if str(path) == SHIPPED_PRICES else path for path in paths]

    def price_sources(self) -> list[Path]:
        """The override files in the order they are consulted: `price_files`, then the profile's."""
        files = list(self.price_files)
        return files + [p for p in PRICE_PROFILES[self.price_profile] if p not in files]

    @model_validator(mode="after")
    def _replay_range(self) -> StreamSettings:
        if (self.replay_from_ms is None) != (self.replay_to_ms is None):
            raise ValueError("set both CALLSTREAM_STREAM_REPLAY_FROM_MS and _REPLAY_TO_MS, or neither")
        if (
            self.replay_from_ms is not None
            and self.replay_to_ms is not None
            and self.replay_to_ms <= self.replay_from_ms
        ):
            raise ValueError("CALLSTREAM_STREAM_REPLAY_TO_MS must be after _REPLAY_FROM_MS")
        return self

    def event_time_bounds(self) -> EventTimeBounds:
        replay_range = None
        if self.replay_from_ms is not None and self.replay_to_ms is not None:
            replay_range = (self.replay_from_ms, self.replay_to_ms)
        return EventTimeBounds(self.max_event_age_ms, self.max_clock_skew_ms, replay_range)

    def name_caps(self) -> dict[str, int]:
        return {
            "model": self.max_models_per_day,
            "model_family": self.max_models_per_day,
            "provider": self.max_providers_per_day,
            "service": self.max_services_per_day,
            "user": self.max_users_per_day,
        }

    def retention_ms(self) -> dict[str, int]:
        return {"1m": self.retention_1m_ms, "1h": self.retention_1h_ms, "1d": self.retention_1d_ms}
