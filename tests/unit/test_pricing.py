"""Price catalogue: pico-dollar conversion, dated lookups, override files, and genai-prices entries.

Expected prices are computed with Fractions from the $/Mtok figures, or taken from genai-prices'
own model resolution, never from the code under test.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
from genai_prices import types as gp
from genai_prices.data import providers as bundled_providers
from genai_prices.data_snapshot import get_snapshot

from callstream.producers.contract import RawCallEvent
from callstream.streams.catalogue import ConversionReport, clause_regex, genai_price_entries, load_catalogue
from callstream.streams.enrich import enrich
from callstream.streams.pricing import (
    DEFAULT_OVERRIDES,
    PICO_PER_USD,
    Price,
    PriceCatalogue,
    cost_of,
    default_catalogue,
    load_price_file,
    per_mtok_to_pico_per_token,
)
from callstream.streams.settings import StreamSettings


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def pico(usd_per_mtok: str | Decimal) -> Fraction:
    """pico-USD per token: $/Mtok * 1e12 / 1e6."""
    return Fraction(str(usd_per_mtok)) * PICO_PER_USD / 1_000_000


def entry(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "x@2025",
        "provider": "p",
        "match": "m-1",
        "effective_from": "2025-01-01T00:00:00Z",
        "input": 1,
        "output": 2,
    }
    return base | fields


def write_prices(tmp_path: Path, items: Any, name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps({"prices": items}))
    return path


# -- pico-dollar conversion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "8",
        8,
        8.0,
        "0.42",
        0.42,
        "2.50",
        "0.000001",
        1e-6,
        "15.123456",
        "0",
        0,
        "1234567.891011",
        Decimal("3.75"),
    ],
)
def test_per_mtok_to_pico_is_exact(value: Any) -> None:
    assert per_mtok_to_pico_per_token(value) == pico(str(value))
    assert PICO_PER_USD == 10**12


def test_more_than_six_decimals_is_an_error_unless_rounding_is_asked_for() -> None:
    with pytest.raises(ValueError, match="more than 6 decimals"):
        per_mtok_to_pico_per_token("0.0000015")
    # Rounding is half to even, to a whole pico-dollar per token.
    assert per_mtok_to_pico_per_token("0.0000015", round_to_pico=True) == 2
    assert per_mtok_to_pico_per_token("0.0000025", round_to_pico=True) == 2
    assert per_mtok_to_pico_per_token("0.00000251", round_to_pico=True) == 3
    assert per_mtok_to_pico_per_token("1.23456749", round_to_pico=True) == 1_234_567
    assert per_mtok_to_pico_per_token(Decimal("0.1234565"), round_to_pico=True) == 123_456


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-1", "finite number >= 0"),
        (-0.5, "finite number >= 0"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (float("inf"), "finite"),
        ("abc", "is not a number"),
        ("", "is not a number"),
        (True, "must be a number"),
        (None, "must be a number"),
        ([1], "must be a number"),
    ],
)
def test_bad_prices_are_rejected_clearly(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        per_mtok_to_pico_per_token(value)


def test_cost_of_prices_each_token_once() -> None:
    price = Price.from_dict(
        entry(input="2.5", output="10", cache_read="1.25", cache_write="3.125", reasoning="12")
    )
    cost = cost_of(
        price,
        1000,
        400,
        cache_read_input_tokens=300,
        cache_creation_input_tokens=200,
        reasoning_output_tokens=150,
    )
    assert cost.input_pico == 500 * pico("2.5") + 300 * pico("1.25") + 200 * pico("3.125")
    assert cost.output_pico == 250 * pico("10") + 150 * pico("12")
    assert cost.total_pico == cost.input_pico + cost.output_pico


def test_cache_and_reasoning_prices_default_to_input_and_output() -> None:
    price = Price.from_dict(entry(input="3", output="15"))
    assert (price.cache_read, price.cache_write) == (pico("3"), pico("3"))
    assert price.reasoning == pico("15")
    assert price.source == "override" and price.series == ""
    assert price.effective_from_ms == ms("2025-01-01T00:00:00Z")


# -- override files: validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        (entry(input="abc"), "input: price 'abc' is not a number"),
        (entry(output=-1), "output: price -1 must be a finite number >= 0"),
        (entry(cache_read="0.00000001"), "cache_read: price 0.00000001 $/Mtok has more than 6 decimals"),
        (entry(match="gpt-(4"), "match 'gpt-(4' is not a valid regular expression"),
        (entry(effective_from="2025-01-01T00:00:00"), "effective_from needs a timezone"),
        (entry(effective_from="soon"), "effective_from 'soon' is not an ISO-8601 time"),
        ({k: v for k, v in entry().items() if k != "output"}, "missing fields ['output']"),
        ({k: v for k, v in entry().items() if k != "provider"}, "missing fields ['provider']"),
        (entry(cache_reads=1), "unknown fields ['cache_reads']"),
        (entry(provider=""), "provider must be a non-empty string"),
        (entry(match=5), "match must be a non-empty string"),
    ],
)
def test_bad_entries_are_rejected_with_file_and_entry_id(tmp_path: Path, item: Any, fragment: str) -> None:
    good = entry(id="good@2025", match="other")
    path = write_prices(tmp_path, [good, item])
    with pytest.raises(ValueError) as info:
        load_price_file(path)
    message = str(info.value)
    assert f"price file {path}, entry #1: bad price entry 'x@2025': " in message
    assert fragment in message


def test_entry_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_prices(tmp_path, ["gpt-4.1 costs 8"])
    with pytest.raises(
        ValueError, match=re.escape(f"price file {path}, entry #0: bad price entry 'gpt-4.1 costs 8'")
    ):
        load_price_file(path)


def test_duplicate_ids_and_ambiguous_dates_are_rejected(tmp_path: Path) -> None:
    dup = write_prices(tmp_path, [entry(), entry(match="other")], "dup.json")
    with pytest.raises(ValueError, match=re.escape(f"price file {dup}, entry #1: duplicate id 'x@2025'")):
        load_price_file(dup)
    same = write_prices(tmp_path, [entry(), entry(id="y@2025")], "same.json")
    with pytest.raises(ValueError, match=r"entry #1 \('y@2025'\): same match and effective_from as 'x@2025'"):
        load_price_file(same)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{", "cannot read price file"),
        (b"[]", "must be an object with a 'prices' list"),
        (b'{"prices": {}}', "must be an object with a 'prices' list"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        load_price_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=r"cannot read price file .*missing\.json"):
        load_price_file(tmp_path / "missing.json")


def test_shipped_overrides_hold_the_seed_gateway_prices() -> None:
    # The gateway tutorial's prices: one price for input and output, USD per million tokens.
    seed = {"gpt-4.1": "8", "claude-sonnet-4-5": "15", "gemini-2.5-flash": "2.50", "deepseek-v3.2": "0.42"}
    catalogue = default_catalogue()
    for model, usd in seed.items():
        price = catalogue.lookup(model, ms("2026-01-01T00:00:00Z"))
        assert price is not None, model
        assert price.input == price.output == price.cache_read == price.reasoning == pico(usd)
        assert price.id.startswith("gateway:") and price.source == "override:gateway_overrides.json"
    assert catalogue.lookup("gpt-4.1-2025-04-14", ms("2026-01-01T00:00:00Z")) is not None
    assert catalogue.lookup("acme-experimental-1", ms("2026-01-01T00:00:00Z")) is None


# -- dated lookups -----------------------------------------------------------------------------------


def dated_catalogue() -> PriceCatalogue:
    return PriceCatalogue(
        [
            Price.from_dict(
                entry(id="m@2025-01", effective_from="2025-01-01T00:00:00Z", input="8", output="8")
            ),
            Price.from_dict(
                entry(id="m@2025-06", effective_from="2025-06-01T00:00:00Z", input="6", output="9")
            ),
            Price.from_dict(
                entry(id="m@2025-03", effective_from="2025-03-01T00:00:00+09:00", input="7", output="7")
            ),
        ]
    )


@pytest.mark.parametrize(
    ("at", "want"),
    [
        ("2024-12-31T23:59:59.999Z", None),
        ("2025-01-01T00:00:00Z", "m@2025-01"),
        ("2025-02-28T14:59:59.999Z", "m@2025-01"),
        ("2025-02-28T15:00:00Z", "m@2025-03"),  # 2025-03-01T00:00+09:00
        ("2025-05-31T23:59:59.999Z", "m@2025-03"),
        ("2025-06-01T00:00:00Z", "m@2025-06"),
        ("2031-01-01T00:00:00Z", "m@2025-06"),
    ],
)
def test_dated_lookup_picks_the_entry_in_force(at: str, want: str | None) -> None:
    price = dated_catalogue().lookup("m-1", ms(at))
    assert (price.id if price else None) == want


def test_price_change_mid_stream() -> None:
    catalogue = dated_catalogue()
    change = datetime(2025, 6, 1, tzinfo=UTC)
    events = [
        RawCallEvent(
            event_id=f"e{i}",
            event_time=change + timedelta(seconds=i * 7 - 70),
            request_model="M-1",
            input_tokens=1000 + i,
            output_tokens=100 + i,
            duration_ms=10,
        )
        for i in range(20)
    ]
    docs = [enrich(e, catalogue) for e in events]
    for event, doc in zip(events, docs, strict=True):
        before = event.event_time < change
        rates = (Fraction(7), Fraction(7)) if before else (Fraction(6), Fraction(9))
        want = (event.input_tokens * rates[0] + event.output_tokens * rates[1]) * 10**6
        assert doc["price_id"] == ("m@2025-03" if before else "m@2025-06")
        assert doc["cost_pico"] == want
    assert {d["price_id"] for d in docs} == {"m@2025-03", "m@2025-06"}


def test_first_source_that_knows_a_model_owns_its_timeline(tmp_path: Path) -> None:
    first = write_prices(tmp_path, [entry(id="a@2025-06", effective_from="2025-06-01T00:00:00Z")], "a.json")
    second = write_prices(
        tmp_path,
        [
            entry(id="b@2024", effective_from="2024-01-01T00:00:00Z"),
            entry(id="b@2025-09", effective_from="2025-09-01T00:00:00Z"),
        ],
        "b.json",
    )
    catalogue = PriceCatalogue.from_files([first, second])
    # Before the first file's entry the model is unpriced: the second file's dates never interleave.
    assert catalogue.lookup("m-1", ms("2025-01-01T00:00:00Z")) is None
    price = catalogue.lookup("m-1", ms("2025-10-01T00:00:00Z"))
    assert price is not None and price.id == "a@2025-06"


def test_lookup_is_case_blind_and_full_match() -> None:
    catalogue = dated_catalogue()
    assert catalogue.lookup("M-1", ms("2026-01-01T00:00:00Z")) is not None
    assert catalogue.lookup("m-10", ms("2026-01-01T00:00:00Z")) is None
    assert catalogue.lookup("xm-1", ms("2026-01-01T00:00:00Z")) is None


def test_compact_date_suffix_falls_back_to_the_dashed_form() -> None:
    catalogue = PriceCatalogue([Price.from_dict(entry(match=r"gpt-9-2025-12-11"))])
    assert catalogue.lookup("gpt-9-20251211", ms("2026-01-01T00:00:00Z")) is not None
    assert catalogue.lookup("gpt-9-20251311", ms("2026-01-01T00:00:00Z")) is None  # not a date


# -- load_catalogue: settings -------------------------------------------------------------------------


def test_load_catalogue_overrides_only() -> None:
    catalogue = load_catalogue(StreamSettings(use_genai_prices=False, price_profile="gateway"))
    assert {p.source for p in catalogue.entries} == {"override:gateway_overrides.json"}


def test_list_prices_are_the_default_and_the_gateway_sheet_a_profile() -> None:
    default = StreamSettings()
    assert default.price_files == [] and default.price_profile == "list" and default.price_sources() == []
    assert load_catalogue(StreamSettings(use_genai_prices=False)).entries == []
    gateway = StreamSettings(price_profile="gateway")
    assert gateway.price_sources() == [DEFAULT_OVERRIDES]
    listed = load_catalogue(default).lookup("gpt-4.1", ms("2026-01-01T00:00:00Z"))
    assert listed is not None and listed.source == "genai-prices" and listed.input == pico("2")
    mine = StreamSettings(price_files=[Path("/x.json")], price_profile="gateway")
    assert mine.price_sources() == [Path("/x.json"), DEFAULT_OVERRIDES]


def test_price_files_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = write_prices(
        tmp_path,
        [
            entry(
                id="mine:gpt-4.1@2020",
                match="gpt-4\\.1",
                input="1",
                output="2",
                effective_from="2020-01-01T00:00:00Z",
            )
        ],
        "mine.json",
    )
    # pydantic-settings reads a list field from the environment as a JSON list.
    monkeypatch.setenv(
        "CALLSTREAM_STREAM_PRICE_FILES", orjson.dumps([str(mine), str(DEFAULT_OVERRIDES)]).decode()
    )
    monkeypatch.setenv("CALLSTREAM_STREAM_USE_GENAI_PRICES", "false")
    settings = StreamSettings()
    assert settings.price_files == [mine, DEFAULT_OVERRIDES]
    catalogue = load_catalogue(settings)
    price = catalogue.lookup("gpt-4.1", ms("2026-01-01T00:00:00Z"))
    assert price is not None and price.id == "mine:gpt-4.1@2020"
    claude = catalogue.lookup("claude-sonnet-4-5", ms("2026-01-01T00:00:00Z"))
    assert claude is not None and claude.id.startswith("gateway:")


def test_bad_price_file_in_settings_fails_at_startup(tmp_path: Path) -> None:
    bad = write_prices(tmp_path, [entry(input="eight")], "bad.json")
    with pytest.raises(ValueError, match=re.escape(f"price file {bad}, entry #0: bad price entry 'x@2025'")):
        load_catalogue(StreamSettings(price_files=[bad], use_genai_prices=False))


@pytest.fixture(scope="module")
def full_catalogue() -> PriceCatalogue:
    return load_catalogue(StreamSettings(price_profile="gateway"))


def test_override_beats_genai_prices(full_catalogue: PriceCatalogue) -> None:
    at = ms("2026-01-01T00:00:00Z")
    gpt41 = full_catalogue.lookup("gpt-4.1", at)
    assert gpt41 is not None and gpt41.id == "gateway:gpt-4.1@2025-01-01" and gpt41.input == pico("8")
    # genai-prices knows gpt-4.1 too, with separate input/output prices.
    genai_only = PriceCatalogue(genai_price_entries())
    native = genai_only.lookup("gpt-4.1", at)
    assert native is not None and native.source == "genai-prices" and native.input != native.output
    # A model only genai-prices knows is priced from it, and the entry says so.
    gpt4o = full_catalogue.lookup("gpt-4o", at)
    assert gpt4o is not None and gpt4o.source == "genai-prices"
    assert re.fullmatch(r"genai-prices:openai:gpt-4o@\d{4}-\d{2}-\d{2}", gpt4o.id)
    assert full_catalogue.lookup("acme-experimental-1", at) is None


# -- genai-prices conversion ----------------------------------------------------------------------------

CLAUSES: list[Any] = [
    gp.ClauseEquals(equals="GPT-4o"),
    gp.ClauseStartsWith(starts_with="claude-3.5"),
    gp.ClauseEndsWith(ends_with="-latest"),
    gp.ClauseContains(contains="sonnet"),
    gp.ClauseRegex(regex=r"^o[134](-mini)?$"),
    gp.ClauseRegex(regex=r"flash-\d"),
    gp.ClauseRegex(regex=r"^(?![^/]+/)(?:labs-)?mistral"),
    gp.ClauseOr(or_=[gp.ClauseEquals(equals="a.b"), gp.ClauseStartsWith(starts_with="x+y")]),
    gp.ClauseAnd(and_=[gp.ClauseStartsWith(starts_with="gpt-"), gp.ClauseRegex(regex=r"^(?!.*-tts(?:$|-))")]),
    gp.ClauseOr(
        or_=[
            gp.ClauseAnd(and_=[gp.ClauseContains(contains="a"), gp.ClauseEndsWith(ends_with="z")]),
            gp.ClauseEquals(equals="q"),
        ]
    ),
]
NAMES = [
    "gpt-4o",
    "gpt-4o-mini",
    "GPT-4O",
    "claude-3.5-sonnet",
    "claude-3x5",
    "mistral-latest",
    "latest",
    "o1",
    "o3-mini",
    "o1-pro",
    "oo1",
    "gemini-2.0-flash-001",
    "flash-x",
    "mistral-large",
    "labs-mistral",
    "org/mistral",
    "a.b",
    "axb",
    "x+y-1",
    "xxy",
    "gpt-4o-mini-tts",
    "gpt-4o-tts-x",
    "gpt-4-ttsx",
    "abcz",
    "az",
    "q",
    "qq",
    "",
    "sonnet",
    "claude-sonnet-4",
]


@pytest.mark.parametrize("clause", CLAUSES, ids=lambda c: type(c).__name__)
def test_clause_regex_accepts_exactly_what_genai_prices_accepts(clause: Any) -> None:
    pattern = re.compile(clause_regex(clause), re.IGNORECASE)
    for name in NAMES:
        assert bool(pattern.fullmatch(name.lower())) == clause.is_match(name.lower()), name


def model(model_id: str, prices: Any, match: Any = None) -> gp.ModelInfo:
    return gp.ModelInfo(id=model_id, match=match or gp.ClauseEquals(equals=model_id), prices=prices)


def provider(provider_id: str, model_match: Any, models: list[gp.ModelInfo], **kw: Any) -> gp.Provider:
    return gp.Provider(
        id=provider_id, name=provider_id, api_pattern="x", model_match=model_match, models=models, **kw
    )


def test_genai_dated_tiered_and_off_peak_prices() -> None:
    D = Decimal
    dated = model(
        "acme-1",
        [
            gp.ConditionalPrice(prices=gp.ModelPrice(input_mtok=D("1"), output_mtok=D("4"))),
            gp.ConditionalPrice(
                constraint=gp.StartDateConstraint(start_date=date(2025, 3, 1)),
                prices=gp.ModelPrice(input_mtok=D("0.5"), output_mtok=D("2"), cache_read_mtok=D("0.05")),
            ),
            gp.ConditionalPrice(
                constraint=gp.TimeOfDateConstraint(start_time=time(16, 30), end_time=time(0, 30)),
                prices=gp.ModelPrice(input_mtok=D("0.25"), output_mtok=D("1")),
            ),
            gp.ConditionalPrice(
                constraint=gp.StartDateConstraint(start_date=date(2025, 9, 1)),
                prices=gp.ModelPrice(
                    input_mtok=D("0.6"),
                    output_mtok=D("2.4"),
                    output_reasoning_mtok=D("3"),
                    cache_write_mtok=D("0.75"),
                ),
            ),
        ],
    )
    tiered = model(
        "acme-big",
        gp.ModelPrice(
            input_mtok=gp.TieredPrices(base=D("1.25"), tiers=[gp.Tier(start=200_000, price=D("2.5"))]),
            output_mtok=gp.TieredPrices(base=D("10"), tiers=[gp.Tier(start=200_000, price=D("15"))]),
        ),
    )
    fine = model("acme-fine", gp.ModelPrice(input_mtok=D("0.0000015"), output_mtok=D("0.1234567")))
    embed = model("acme-embed", gp.ModelPrice(input_mtok=D("0.02")))
    image = model("acme-image", gp.ModelPrice(output_image_mtok=D("40")))
    acme = provider("acme", gp.ClauseStartsWith(starts_with="acme-"), [dated, tiered, fine, embed, image])
    report = ConversionReport()
    catalogue = PriceCatalogue(genai_price_entries([acme], report))

    def at(model_name: str, when: str) -> Price:
        price = catalogue.lookup(model_name, ms(when))
        assert price is not None
        return price

    p = at("acme-1", "2025-02-28T23:59:59Z")
    assert (p.id, p.input, p.output, p.cache_read, p.reasoning) == (
        "genai-prices:acme:acme-1@1970-01-01",
        pico("1"),
        pico("4"),
        pico("1"),
        pico("4"),
    )
    assert p.effective_from_ms == 0 and p.source == "genai-prices" and p.provider == "acme"
    p = at("acme-1", "2025-03-01T00:00:00Z")
    assert (p.id, p.input, p.output, p.cache_read, p.cache_write) == (
        "genai-prices:acme:acme-1@2025-03-01",
        pico("0.5"),
        pico("2"),
        pico("0.05"),
        pico("0.5"),
    )
    p = at("acme-1", "2025-03-01T17:00:00Z")  # in the off-peak window: the standard price still applies
    assert p.id == "genai-prices:acme:acme-1@2025-03-01"
    p = at("acme-1", "2026-01-01T00:00:00Z")
    assert (p.id, p.input, p.output, p.reasoning, p.cache_write, p.cache_read) == (
        "genai-prices:acme:acme-1@2025-09-01",
        pico("0.6"),
        pico("2.4"),
        pico("3"),
        pico("0.75"),
        pico("0.6"),
    )
    p = at("acme-big", "2026-01-01T00:00:00Z")
    assert (p.input, p.output) == (pico("1.25"), pico("10"))  # the base tier
    p = at("acme-fine", "2026-01-01T00:00:00Z")
    assert (p.input, p.output) == (2, 123_457)  # rounded half to even to whole pico-dollars per token
    p = at("acme-embed", "2026-01-01T00:00:00Z")
    assert (p.input, p.output) == (pico("0.02"), 0)
    assert catalogue.lookup("acme-image", ms("2026-01-01T00:00:00Z")) is None  # not priced per token
    assert (report.rounded_prices, report.not_token_priced, report.time_of_day_prices) == (2, 1, 1)
    assert report.tiered_prices == 2


def test_genai_provider_gates_follow_genai_prices_resolution() -> None:
    D = Decimal
    price = gp.ModelPrice(input_mtok=D("1"), output_mtok=D("2"))
    first = provider("first", gp.ClauseContains(contains="shared"), [model("first-only", price)])
    second = provider(
        "second",
        gp.ClauseStartsWith(starts_with="s"),
        [
            model("s-model", price, gp.ClauseStartsWith(starts_with="s")),
            model("s-shared", price, gp.ClauseEquals(equals="s-shared")),
        ],
    )
    hosted = provider("hosted", None, [model("hosted-model", price)])
    fallback = provider("fb", gp.ClauseStartsWith(starts_with="fb-"), [], fallback_model_providers=["second"])
    catalogue = PriceCatalogue(genai_price_entries([first, second, hosted, fallback]))
    at = ms("2026-01-01T00:00:00Z")
    # 's-shared' is claimed by 'first' (earlier, contains 'shared'), which has no such model: unpriced,
    # as in genai-prices, never priced from a later provider.
    assert catalogue.lookup("s-shared", at) is None
    hit = catalogue.lookup("s-anything", at)
    assert hit is not None and hit.id == "genai-prices:second:s-model@1970-01-01"
    assert catalogue.lookup("hosted-model", at) is None  # a provider without model_match claims no names
    # Names 'fb' claims but has no model for fall back to its fallback providers' models... which
    # must match the name themselves.
    assert catalogue.lookup("fb-x", at) is None


def genai_expected(name: str, when: datetime) -> tuple[int, int, int, int, int] | str | None:
    """Prices genai-prices itself resolves for a bare model name, in pico-USD per token."""
    try:
        _, info = get_snapshot().find_provider_model(name, None, None, None)
    except LookupError:
        return None
    conditionals = info.prices if isinstance(info.prices, list) else []
    if any(
        isinstance(c.constraint, gp.TimeOfDateConstraint) and c.constraint.active(when) for c in conditionals
    ):
        return "off-peak"
    mp = info.get_prices(when)

    def usd(key: str) -> Fraction | None:
        value = getattr(mp, key, None)
        if isinstance(value, gp.TieredPrices):
            value = value.base
        return None if value is None else Fraction(value) * 10**6

    input_, output = usd("input_mtok"), usd("output_mtok")
    if input_ is None and output is None:
        return None
    input_, output = input_ or Fraction(0), output or Fraction(0)
    cache_read, cache_write, reasoning = (
        usd("cache_read_mtok"),
        usd("cache_write_mtok"),
        usd("output_reasoning_mtok"),
    )
    values = (
        input_,
        output,
        cache_read if cache_read is not None else input_,
        cache_write if cache_write is not None else input_,
        reasoning if reasoning is not None else output,
    )
    return tuple(round(v) for v in values)  # type: ignore[return-value]


def candidate_names() -> set[str]:
    names: set[str] = set()

    def walk(clause: Any) -> None:
        if isinstance(clause, gp.ClauseEquals):
            names.add(clause.equals.lower())
        elif isinstance(clause, gp.ClauseStartsWith):
            names.update({clause.starts_with.lower(), clause.starts_with.lower() + "-2025-01-01"})
        elif isinstance(clause, gp.ClauseContains):
            names.add(f"x-{clause.contains.lower()}-y")
        for sub in [*getattr(clause, "or_", []), *getattr(clause, "and_", [])]:
            walk(sub)

    for p in bundled_providers:
        if p.model_match is None:
            continue
        for m in p.models:
            names.add(m.id.lower())
            walk(m.match)
    names.update({re.sub(r"-(\d{4})-(\d{2})-(\d{2})$", r"-\1\2\3", n) for n in list(names)})
    names.update({"gpt-zzz-unknown", "claude-nonexistent-9", "gemini-nope", "acme-experimental-1"})
    return names


def test_genai_entries_agree_with_genai_prices_on_its_own_data() -> None:
    catalogue = PriceCatalogue(genai_price_entries())
    starts = {date(2023, 6, 15), date(2031, 1, 1)}
    for p in bundled_providers:
        for m in p.models:
            for c in m.prices if isinstance(m.prices, list) else []:
                if isinstance(c.constraint, gp.StartDateConstraint):
                    starts.update({c.constraint.start_date, c.constraint.start_date - timedelta(days=1)})
    instants = [datetime.combine(d, time(12), UTC) for d in sorted(starts)]
    names = candidate_names()
    assert len(names) > 1000
    mismatches = []
    priced = 0
    for name in sorted(names):
        for when in instants:
            want = genai_expected(name, when)
            if want == "off-peak":
                continue
            got = catalogue.lookup(name, int(when.timestamp() * 1000))
            got_values = (
                None
                if got is None
                else (got.input, got.output, got.cache_read, got.cache_write, got.reasoning)
            )
            priced += got is not None
            if got_values != want:
                mismatches.append((name, when.date().isoformat(), want, got and got.id))
    assert mismatches == []
    assert priced > 1000


def test_shipped_names_the_price_file_that_comes_with_callstream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented example works from any working directory (a Docker image's included)."""
    from callstream.streams.pricing import DEFAULT_OVERRIDES
    from callstream.streams.settings import StreamSettings

    monkeypatch.setenv("CALLSTREAM_STREAM_PRICE_FILES", '["/etc/callstream/prices.json", "shipped"]')
    settings = StreamSettings()
    assert settings.price_files[1] == DEFAULT_OVERRIDES and DEFAULT_OVERRIDES.is_file()
    assert str(settings.price_files[0]) == "/etc/callstream/prices.json"


# -- what the mutation run found untested (docs/mutation.md) --------------------------------------------


def test_too_many_decimals_says_why_and_rounding_ignores_the_decimal_context() -> None:
    with pytest.raises(ValueError) as info:
        per_mtok_to_pico_per_token("0.0000015")
    assert str(info.value) == (
        "price 0.0000015 $/Mtok has more than 6 decimals (prices are kept in whole pico-dollars per token)"
    )
    with localcontext(rounding=ROUND_UP):  # a caller's context does not change the rounding
        assert per_mtok_to_pico_per_token("0.0000015", round_to_pico=True) == 2
        assert per_mtok_to_pico_per_token("0.0000025", round_to_pico=True) == 2
        assert per_mtok_to_pico_per_token("0.0000021", round_to_pico=True) == 2


def test_an_entry_keeps_its_provider_and_may_carry_comments() -> None:
    price = Price.from_dict(entry(provider="acme", _note="from the March invoice", _by="ops"))
    assert (price.id, price.provider, price.match.pattern) == ("x@2025", "acme", "m-1")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {
                "provider": "p",
                "match": "m",
                "effective_from": "2025-01-01T00:00:00Z",
                "input": 1,
                "output": 1,
            },
            "bad price entry {'provider': 'p', 'match': 'm', 'effective_from': '2025-01-01T00:00:00Z', "
            "'input': 1, 'output': 1}: missing fields ['id']",
        ),
        (
            entry(effective_from="2025-01-01T00:00:00"),
            "bad price entry 'x@2025': effective_from needs a timezone (e.g. 2025-01-01T00:00:00Z)",
        ),
        (
            entry(effective_from="soon"),
            "bad price entry 'x@2025': effective_from 'soon' is not an ISO-8601 time "
            "(e.g. 2025-01-01T00:00:00Z)",
        ),
    ],
)
def test_entry_errors_read_in_full(item: dict[str, Any], message: str) -> None:
    """An entry without an id is named by its content; the examples are exact ISO-8601 times."""
    with pytest.raises(ValueError) as info:
        Price.from_dict(item)
    assert str(info.value) == message


def test_cost_of_with_only_input_and_output_tokens() -> None:
    price = Price.from_dict(entry(input="2.5", output="10", cache_read="1", cache_write="4", reasoning="20"))
    cost = cost_of(price, 1000, 400)
    assert (cost.input_pico, cost.output_pico) == (1000 * pico("2.5"), 400 * pico("10"))


def test_an_impossible_compact_date_is_left_as_it_is() -> None:
    """'20250231' is no date, so 'm-20250231' is looked up as it is (and is unpriced here) rather
    than being rewritten into something another entry matches."""
    catalogue = PriceCatalogue([Price.from_dict(entry(match=r"m-?\d{4}(-\d\d-\d\d)?"))])
    assert catalogue.lookup("m-2025-02-28", ms("2026-01-01T00:00:00Z")) is not None
    assert catalogue.lookup("m-20250228", ms("2026-01-01T00:00:00Z")) is not None
    assert catalogue.lookup("m-20250231", ms("2026-01-01T00:00:00Z")) is None
