"""Report settings. Environment prefix `CALLSTREAM_REPORT_`; the command-line options override them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_REPORT_", extra="ignore")

    time_zone: str = "UTC"  # IANA name; days, hours and weekdays are this zone's
    default_last: str = "7d"  # the range when neither --since nor --last is given
    top_n: int = Field(default=10, ge=1)  # rows of the top users / sessions / services / wasteful calls
    waste_ratio_threshold: float = Field(default=10.0, gt=0)  # input/output tokens above this is wasteful
    waste_scan_max_calls: int = Field(default=500_000, ge=1)  # calls read for the waste check at most
    error_samples_per_category: int = Field(default=3, ge=0)  # distinct messages shown per model and error
    page_size_docs: int = Field(default=5000, ge=10, le=10_000)  # documents per search_after page
    exact_terms_max_keys: int = Field(default=20_000, ge=10)  # rank up to this many users/sessions exactly
    terms_shard_size: int = Field(default=2000, ge=10)  # candidates per shard for a top-N terms query
    max_ranges_per_query: int = Field(default=500, ge=1)  # window ranges in one aggregates query
    savings_share: float = Field(default=0.5, gt=0, le=1)  # of the selected traffic that moves
    caching_hit_rate: float = Field(default=0.5, ge=0, le=1)  # hypothetical share of input read from cache
