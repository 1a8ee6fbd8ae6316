"""`audioscope report`: the HTML report of a run folder, opened in a real headless browser.

The run folder is made of real step outputs: a synthetic corpus (`audioscope
synth`) ingested into a clip store (`audioscope ingest`, ffmpeg + Beam), a
scores folder in the score step's format, the real filter (ground truth from
the corpus), an annotation folder whose status comes from the annotation
step's own status code, a mixtures folder, a release published by the real
publisher, and an evaluation made by the evaluator's own code (a stand-in
separator in place of a trained model) with its example WAVs. The page is
opened in Debian's chromium through Playwright: no console errors, every
<video>/<audio> playable, and a screenshot of each section.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from audioscope import cli
from audioscope.curation.report import ReportConfig, find_run_folders, report

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
SECTIONS = ("df", "annotation", "mix", "release", "evaluation")


def _evaluation(out: Path) -> None:
    """report.json and example WAVs written by the evaluator's code, with a stand-in separator."""
    from audioscope.models.evaluate import EVAL_SETS, evaluate_sets

    rng = np.random.default_rng(3)
    t = np.arange(80_000) / 16_000

    def batches(name: str):
        for b in range(2):
            n = 2
            audio1 = np.stack([0.3 * np.sin(2 * np.pi * (300 + 50 * (b * n + i)) * t) for i in range(n)]).astype(np.float32)
            audio2 = (0.1 * rng.standard_normal((n, t.size))).astype(np.float32) if name.endswith("mom") else np.zeros_like(audio1)
            yield {"audio1": audio1, "audio2": audio2, "frames": np.zeros((n, 5, 128, 128, 3), np.uint8),
                   "clip_id1": np.array([f"{name}-{b}-{i}".encode() for i in range(n)])}  # fmt: skip

    def predict(mixture, frames):
        # two sources: a low-passed copy and the rest; the first is "on screen"
        kernel = np.ones(8, np.float32) / 8
        low = np.stack([np.convolve(m, kernel, mode="same") for m in mixture]).astype(np.float32)
        sources = np.stack([low, mixture - low], axis=1)
        probs = np.tile(np.array([0.8, 0.2], np.float32), (len(mixture), 1))
        return {"sources": sources, "probabilities": probs, "on_screen": np.einsum("bm,bmt->bt", probs, sources)}

    rep = evaluate_sets(predict, {s: batches(s) for s in EVAL_SETS}, examples_dir=out / "examples", examples_per_set=1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"model": "audioscope-run", **rep}, indent=2))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audioscope.annotation.status import write_status
    from audioscope.clipstore.reader import ClipStore
    from audioscope.curation import release
    from audioscope.curation.filter import FilterConfig, Selection, filter
    from tests.curation.helpers import write_scores
    from tests.curation.release_inputs import MODEL_ID, write_df, write_labels, write_mix

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    run = tmp_path_factory.mktemp("run")
    assert cli.main(["synth", "--out", str(run / "corpus"), "--videos", "6", "--seed", "11",
                     "--max-duration", "12", "--no-broken"]) == 0  # fmt: skip
    assert cli.main(["ingest", str(run / "corpus" / "list.csv"), "--media-root", str(run / "corpus"),
                     "--out", str(run / "clipstore")]) == 0  # fmt: skip
    index = ClipStore.open(str(run / "clipstore")).index
    probability = (np.arange(len(index)) * 0.6180339887) % 1.0  # spread over every score band
    write_scores(run / "scores", index, probability, model_id=MODEL_ID)
    (run / "scores" / "scores.json").write_text(json.dumps({"model_id": MODEL_ID, "store": str(run / "clipstore")}))
    filter(FilterConfig(scores=str(run / "scores"), store=str(run / "clipstore"), out=str(run / "df"),
                        selection=Selection(threshold=0.5)))  # fmt: skip

    # annotation, mixtures and a published release from the release tests' real step outputs
    side = tmp_path_factory.mktemp("release-inputs")
    df = write_df(side)
    mix = write_mix(side / "mix", str(side / "videos"))
    labels = write_labels(side / "labels", str(side / "videos"))
    write_status(str(labels))
    release.publish(release.PublishRequest(mix=str(mix), df=str(df), labels=str(labels), name="audioscope-test",
                                           version="1.0.0", root=str(run / "releases")), show_progress=False)  # fmt: skip
    shutil.copytree(labels, run / "annotation")
    shutil.copytree(mix, run / "mix")
    _evaluation(run / "evaluation")
    return run


def test_the_step_folders_are_found_by_content(run_dir):
    f = find_run_folders(str(run_dir))
    assert (f.df, f.annotation, f.mix, f.releases, f.evaluation) == tuple(
        str(run_dir / n) for n in ("df", "annotation", "mix", "releases", "evaluation")
    )


def _open_in_chromium(html: Path, shots: Path) -> tuple[list[str], list[list], dict[str, Path], str]:
    """Open the page; (console errors, [tag, src, readyState, error, played] per media element, screenshots, text)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(html.resolve().as_uri())
            page.wait_for_load_state("load")
            media = page.evaluate(
                """async () => {
                  const out = [];
                  for (const m of document.querySelectorAll('video, audio')) {
                    if (m.readyState < 2) {
                      await new Promise(r => { m.addEventListener('canplay', r, {once: true});
                                               m.addEventListener('error', r, {once: true}); setTimeout(r, 10000); });
                    }
                    let played = false;
                    try { m.muted = true; await m.play(); played = true; m.pause(); } catch (e) { played = String(e); }
                    out.push([m.tagName, m.getAttribute('src'), m.readyState, m.error ? m.error.code : null, played]);
                  }
                  return out;
                }"""
            )
            saved = {}
            for section in page.query_selector_all("section"):
                key = section.get_attribute("id")
                saved[key] = shots / f"section-{key}.png"
                section.screenshot(path=str(saved[key]))
            text = page.inner_text("body")
        finally:
            browser.close()
    return errors, media, saved, text


def test_report_renders_offline_with_every_media_element_playable(run_dir, tmp_path):
    out = tmp_path / "report"
    result = report(ReportConfig(run_dir=str(run_dir), out=str(out)))
    assert result.sections == {s: True for s in SECTIONS}
    page = (out / "report.html").read_text()
    # self-contained: every src/href is a relative file that exists, a data: URI or an anchor
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    files = [u for u in links if not u.startswith(("data:", "#"))]
    assert files and all(not u.startswith(("http:", "https:", "/", "file:")) and (out / u).is_file() for u in files)
    assert 'class="missing"' not in page

    errors, media, shots, text = _open_in_chromium(out / "report.html", tmp_path / "screenshots")
    assert errors == []
    videos = [m for m in media if m[0] == "VIDEO"]
    audios = [m for m in media if m[0] == "AUDIO"]
    assert len(videos) >= 4 and len(audios) >= 16  # example clips per band; 4 sets x >= 4 WAVs
    not_playable = [m for m in media if not (m[2] >= 2 or m[4] is True) or m[3] is not None]
    assert not_playable == []
    assert set(shots) == set(SECTIONS) and all(p.stat().st_size > 5_000 for p in shots.values())
    for words in ("Example clips per score band", "Fleiss' kappa", "Landis", "Votes of sample clips",
                  "NOn", "audioscope-test 1.0.0", "OSR", "MixIT remix", "mean p", "stacked by ground truth"):  # fmt: skip
        assert words in text, words


def test_missing_sections_say_which_command_makes_them(tmp_path):
    run = tmp_path / "empty-run"
    run.mkdir()
    assert cli.main(["report", str(run), "--no-videos"]) == 0
    page = (run / "report" / "report.html").read_text()
    for command in ("audioscope filter", "audioscope annotate", "audioscope mix", "audioscope release publish",
                    "audioscope evaluate"):  # fmt: skip
        assert command in page, command
    errors, media, shots, _ = _open_in_chromium(run / "report" / "report.html", tmp_path / "shots")
    assert errors == [] and media == [] and set(shots) == set(SECTIONS)


def test_not_a_folder_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]


def test_a_clip_that_cannot_be_cut_is_shown_with_its_reason(tmp_path):
    """A store whose media is gone: the Df section says so per clip, and the rest of the report is written."""
    from audioscope.curation.filter import FilterConfig, filter
    from tests.curation.helpers import index_rows, make_store, write_scores

    run = tmp_path / "run"
    index = index_rows({"vidA": 6, "vidB": 6}, video_dir=tmp_path / "videos")
    store = make_store(run / "clipstore", index)  # an index, no media
    scores = write_scores(run / "scores", index, np.linspace(0, 1, len(index)))
    filter(FilterConfig(scores=scores, store=store, out=str(run / "df"), use_truth=False))
    result = report(ReportConfig(run_dir=str(run)))
    page = Path(result.html).read_text()
    assert result.sections["df"] and page.count("could not be cut") == 8  # 2 clips x 4 bands
    assert "has no media" in page and "<video" not in page
