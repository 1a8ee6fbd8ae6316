"""The Df folder: the one owner of what `audioscope filter` writes.

Layout of ``DF_DIR`` (every file written atomically; ``report.json`` last, so
its presence next to ``df.parquet`` means the step finished)::

    df.parquet                 one row per kept clip (schemas.tables.DF)
    csv/train.csv              AudioScope clip lists (video path,start,end),
    csv/validate.csv           one per split (the published file-name spelling)
    csv/test.csv
    score_histogram.png        scores of all clips and of kept clips
    report.md                  the report, for people
    report.json                the report, for programs (:class:`DfReport`)

Other steps (annotation pools, mixing, releases, the HTML report) read a Df
through :class:`DfLayout`, :func:`read_df` and :func:`read_report`, never by
file name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd

from audioscope import storage
from audioscope.schemas.tables import CSV_NAMES, DEFAULT_RATIOS, SPLITS
from audioscope.errors import UserError
from audioscope.folders import FolderLayout
from audioscope.folders import another_steps_folder
from audioscope.shell import q

DF_PARQUET = "df.parquet"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
HISTOGRAM_PNG = "score_histogram.png"


@dataclass(frozen=True)
class DfLayout(FolderLayout):
    """Where each file of a Df folder lives (local path or URI)."""

    @classmethod
    def of(cls, path: str) -> "DfLayout":
        """The layout of a Df folder given as the folder or as its ``df.parquet``."""
        path = str(path)
        if path.rstrip("/").endswith("/" + DF_PARQUET) or path == DF_PARQUET:
            path = path.rstrip("/")[: -len(DF_PARQUET)].rstrip("/") or "."
        return cls(path)

    @property
    def df_parquet(self) -> str:
        return self.path(DF_PARQUET)

    @property
    def report_json(self) -> str:
        return self.path(REPORT_JSON)

    @property
    def report_md(self) -> str:
        return self.path(REPORT_MD)

    @property
    def histogram_png(self) -> str:
        return self.path(HISTOGRAM_PNG)

    def csv_name(self, split: str) -> str:
        """``csv/<name>.csv`` of a split, relative to the folder."""
        return f"csv/{CSV_NAMES[split]}.csv"

    def csv(self, split: str) -> str:
        return self.path("csv", f"{CSV_NAMES[split]}.csv")

    @property
    def files(self) -> dict[str, str]:
        """Every output, relative name -> path, in the order they are written (report.json last)."""
        out = {DF_PARQUET: self.df_parquet}
        out.update({self.csv_name(s): self.csv(s) for s in SPLITS})
        out[HISTOGRAM_PNG] = self.histogram_png
        out[REPORT_MD] = self.report_md
        out[REPORT_JSON] = self.report_json
        return out

    #: The files a release carries (relative names).
    RELEASED: ClassVar[tuple[str, ...]] = (DF_PARQUET, REPORT_JSON, REPORT_MD, HISTOGRAM_PNG)

    def is_finished(self) -> bool:
        return storage.exists(self.report_json) and storage.exists(self.df_parquet)

    def same_as(self, other: str) -> bool:
        """Whether ``other`` (a folder or its df.parquet, absolute, relative or a URI) names this folder."""
        return _canonical(self.root) == _canonical(DfLayout.of(other).root)

    def require_finished(self) -> None:
        if not self.is_finished():
            _not_another_steps(self.root)
            missing = [n for n, p in ((DF_PARQUET, self.df_parquet), (REPORT_JSON, self.report_json))
                       if not storage.exists(p)]  # fmt: skip
            raise UserError(
                f"{self.root} is not a finished Df folder ({', '.join(missing)} missing): make it with "
                f"`audioscope filter --scores SCORES_DIR --store STORE --out {q(self.root)}`"
            )


def _canonical(path: str) -> str:
    import os

    if storage.is_local(path):
        local = path[len("file://"):] if path.startswith("file://") else path
        return os.path.realpath(os.path.abspath(local))
    return path.rstrip("/")


def _not_another_steps(root: str) -> None:
    """Refuse another step's output folder given as a Df folder, naming it."""
    wrong = another_steps_folder(root, "df", "--df")
    if wrong:
        raise UserError(wrong)


def _layout(df: "str | DfLayout") -> DfLayout:
    return df if isinstance(df, DfLayout) else DfLayout.of(df)


# --------------------------------------------------------------------------- readers


def read_df(df: "str | DfLayout", columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``df.parquet`` checked against :data:`audioscope.schemas.tables.DF` (optionally only ``columns``).

    Raises :class:`UserError` (one line saying what to do) when the file is
    missing or is not a Df table.
    """
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import DF, SchemaError, validate

    layout = _layout(df)
    path = layout.df_parquet
    if not storage.exists(path):
        _not_another_steps(layout.root)
        raise UserError(
            f"no Df in {layout.root} ({DF_PARQUET} is missing): make it with "
            f"`audioscope filter --scores SCORES_DIR --store STORE --out {q(layout.root)}`"
        )
    try:
        with storage.open_file(path) as fh:
            table = validate(pq.read_table(fh), DF)
    except SchemaError as e:
        raise UserError(f"{path} is not a valid Df table ({e}); re-run `audioscope filter` to rewrite it") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e}); re-run `audioscope filter` to rewrite it") from None
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table.to_pandas()


@dataclass(frozen=True)
class DfReport:
    """``report.json`` of a Df folder, with typed access to what other steps use."""

    data: Mapping[str, Any]

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.data.get("inputs") or {}

    @property
    def model_id(self) -> str | None:
        return self.inputs.get("model_id")

    @property
    def model_folder(self) -> str | None:
        """The coincidence model folder that scores.json names, if any."""
        model = (self.inputs.get("scores_json") or {}).get("model")
        return str(model) if model else None

    @property
    def store(self) -> str | None:
        return self.inputs.get("store")

    @property
    def selection(self) -> Mapping[str, Any]:
        return self.inputs.get("selection") or {}

    @property
    def split_ratios(self) -> tuple[float, float, float]:
        try:
            r = self.inputs["splits"]["ratios"]
            return (float(r[0]), float(r[1]), float(r[2]))
        except (KeyError, TypeError, IndexError, ValueError):
            return DEFAULT_RATIOS

    @property
    def split_seed(self) -> int:
        try:
            return int(self.inputs["splits"]["seed"])
        except (KeyError, TypeError, ValueError):
            return 0

    @property
    def truth(self) -> Mapping[str, Any]:
        return self.inputs.get("truth") or {}

    @property
    def truth_metrics(self) -> Mapping[str, Any] | None:
        return self.data.get("truth_metrics")

    @property
    def kept(self) -> Mapping[str, Any]:
        return self.data.get("kept") or {}

    @property
    def histogram(self) -> Mapping[str, Any]:
        return self.data.get("histogram") or {}

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings") or [])

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def read_report(df: "str | DfLayout") -> DfReport:
    """``report.json`` of a finished Df folder; :class:`UserError` when it is missing or not JSON."""
    layout = _layout(df)
    fix = f"make it with `audioscope filter --scores SCORES_DIR --store STORE --out {q(layout.root)}`"
    if not storage.exists(layout.report_json):
        _not_another_steps(layout.root)
        raise UserError(f"{layout.root} is not a finished Df folder ({REPORT_JSON} is missing): {fix}")
    try:
        data = json.loads(storage.read_text(layout.report_json))
    except ValueError:
        raise UserError(f"{layout.report_json} is not valid JSON; {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{layout.report_json} does not hold a JSON object; {fix}")
    return DfReport(data)


def split_settings(df: "str | DfLayout") -> tuple[tuple[float, float, float], int]:
    """The split ratios and seed Df was made with, else the defaults (no report, or an unreadable one)."""
    try:
        report = read_report(df)
    except UserError:
        return DEFAULT_RATIOS, 0
    return report.split_ratios, report.split_seed
