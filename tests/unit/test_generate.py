"""Quick checks of the messy-lead generator in bench/generate.py and the samples made from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"


def _load(name: str, path: Path) -> ModuleType:
    # bench/ is scripts, not a package: load by path, registered so dataclasses can resolve the module.
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = _load("leadflow_bench_generate", ROOT / "bench" / "generate.py")
make_sample = _load("leadflow_bench_make_sample", ROOT / "bench" / "make_sample.py")
_parsed_times = make_sample.parse_generated_times


def _bad_rows(frame: pd.DataFrame) -> pd.Series:
    """Rows that break the intake contract in one of the ways the generator plants."""
    email_ok = frame["email"].str.strip().str.fullmatch(EMAIL).fillna(False)
    when = _parsed_times(frame["submitted_at"])
    return (
        ~email_ok
        | when.isna()
        | (when > pd.Timestamp("2030-01-01", tz="UTC"))
        | frame["source"].isna()
        | (frame["first_name"].str.len() > 200).fillna(False)
        | (frame["message"].str.len() > 10_000).fillna(False)
    )


def test_same_seed_same_leads_other_seed_other_leads() -> None:
    first = gen.generate_leads(2_000, seed=11)
    assert first.equals(gen.generate_leads(2_000, seed=11))
    assert not first.equals(gen.generate_leads(2_000, seed=12))


@pytest.mark.parametrize("n", [0, 1, 7, 1_234])
def test_requested_rows_in_canonical_string_columns(n: int) -> None:
    frame = gen.generate_leads(n)
    assert len(frame) == n
    assert tuple(frame.columns) == gen.CANONICAL_COLUMNS
    assert all(isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA for dtype in frame.dtypes)


def test_columns_follow_the_intake_contract() -> None:
    from leadflow.domain.contract import CANONICAL_COLUMNS

    # The generator writes form submissions: the contract's columns up to the honeypot, in order. The ones after
    # it (a full name, a second phone, the exporting CRM's state) belong to CRM exports and are left out.
    assert CANONICAL_COLUMNS[: CANONICAL_COLUMNS.index("honeypot") + 1] == gen.CANONICAL_COLUMNS


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.1])
def test_bad_fraction_is_honoured(fraction: float) -> None:
    frame = gen.generate_leads(10_000, seed=5, bad_fraction=fraction)
    assert _bad_rows(frame).mean() == pytest.approx(fraction, abs=0.005)


@pytest.mark.parametrize("fraction", [0.0, 0.15, 0.4])
def test_repeat_fraction_is_honoured_and_repeats_come_later(fraction: float) -> None:
    frame = gen.generate_leads(10_000, seed=5, repeat_fraction=fraction, bad_fraction=0.0)
    key = frame["email"].str.strip().str.lower()
    # Exact re-deliveries also repeat an address; they are a separate, tiny share.
    repeats = key.duplicated().mean() - frame.duplicated().mean()
    assert repeats == pytest.approx(fraction, abs=0.01)
    when = _parsed_times(frame["submitted_at"])
    first_seen = when.groupby(key).transform("first")
    assert (when >= first_seen - pd.Timedelta(minutes=1)).all()


def test_exact_duplicates_share_an_external_id() -> None:
    frame = gen.generate_leads(20_000, seed=9)
    dupes = frame[frame.duplicated()]
    assert 0 < len(dupes) <= 0.01 * len(frame)
    assert dupes["external_id"].notna().all()
    assert frame["external_id"].notna().mean() == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_cli_writes_each_format(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"leads.{suffix}"
    assert gen.main(["50", str(target), "--seed", "3"]) == 0
    if suffix == "jsonl":
        back = pd.read_json(target, lines=True)
    else:
        back = pd.read_csv(target) if suffix == "csv" else pd.read_parquet(target)
    assert len(back) == 50


def test_committed_sample_matches_its_script() -> None:
    sample = ROOT / "leadflow" / "data" / "sample_leads.csv"
    text = sample.read_text(encoding="utf-8")
    assert sample.stat().st_size < 200_000
    assert text.splitlines()[0] == ",".join(gen.CANONICAL_COLUMNS)
    expected = make_sample.sample_leads().to_csv(index=False, lineterminator="\n")
    assert text == expected, "leadflow/data/sample_leads.csv is stale: run `python bench/make_sample.py`"
