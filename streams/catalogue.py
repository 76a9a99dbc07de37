"""Build the price catalogue a worker uses: local override files first, then genai-prices."""

from __future__ import annotations

from streams.pricing import PriceCatalogue
from streams.settings import StreamSettings


def load_catalogue(settings: StreamSettings) -> PriceCatalogue:
    return PriceCatalogue.from_files(settings.price_files)
