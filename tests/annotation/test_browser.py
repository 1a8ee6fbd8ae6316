"""A rater in a real browser: Debian's chromium driven by Playwright, against the real server.

Rater 1 logs in through the login page, labels a clip with the mouse (the
two questions, then Submit) and the answer arrives on the server and in
pull's votes. Then, as rater 1 in the same browser session, after the other
raters answered: no other rater's project, task or answer is reachable, the
task carries no pool, split or source path, the organization shows no other
member, and Django's admin pages are refused. The player runs at the clip's
frame rate (5 s clips: "1 of 5 x fps" frames) and the instructions show
their list markers.

Needs Playwright (PyPI) and /usr/bin/chromium (Debian's package; Playwright's
own browser download cannot work offline). Without them the test skips and
says which is missing, unless AUDIOSCOPE_REQUIRE_BROWSER is set: then it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli

from .conftest import RATERS, new_annotation_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("labelstudio")]

CHROMIUM = "/usr/bin/chromium"


def _browser_or_skip():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright is not installed (pip install playwright; it is in the dev extra)"
    if why is None and not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        why = f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    if why:
        if os.environ.get("AUDIOSCOPE_REQUIRE_BROWSER"):
            pytest.fail(f"AUDIOSCOPE_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    return sync_playwright


@pytest.fixture(scope="module")
def pushed(labelstudio, media, tmp_path_factory) -> Path:
    ann = new_annotation_dir(media, tmp_path_factory.mktemp("browser") / "ann")
    pd.read_parquet(ann / "pools.parquet").head(4).to_parquet(ann / "pools.parquet")
    assert cli.main(["annotate", "push", "--annotations", str(ann), "--media", str(labelstudio.root / "media"),
                     "--project-title", "in the browser", *labelstudio.args()]) == 0  # fmt: skip
    return ann


def test_a_rater_labels_in_chromium_and_sees_only_their_own_work(pushed, labelstudio):
    sync_playwright = _browser_or_skip()
    projects = json.loads((pushed / "projects.json").read_text())["raters"]
    me = "rater1"
    account = labelstudio.secrets.raters[me]
    mine = projects[me]["project_id"]
    rater = labelstudio.client(me)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium"),
                                    args=["--no-sandbox"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{labelstudio.url}/user/login/")
            page.fill("input[name=email]", account.email)
            page.fill("input[name=password]", account.password)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_load_state("networkidle")
            assert "/user/login" not in page.url

            # the labeling stream: instructions first (their lists show numbers and bullets)
            page.goto(f"{labelstudio.url}/projects/{mine}/data?labeling=1")
            page.wait_for_selector("text=Labeling Instructions", timeout=60_000)
            text = page.inner_text("body")
            assert "1. Sound from something visible on screen?" in text and "\u2022 A person talks" in text
            page.get_by_role("button", name="Close modal").click()
            page.wait_for_selector("video", state="attached", timeout=60_000)
            page.wait_for_function("() => document.querySelector('video').readyState >= 1", timeout=60_000)
            duration = page.evaluate("() => document.querySelector('video').duration")
            assert 4.5 < duration < 5.5
            # the frame counter "[1] of N" (an input, then text; the task counter "1 of 4" sits beside it);
            # it can appear after the video's metadata, so wait for it a while
            try:
                page.wait_for_function("() => /of\\s+\\d{2,}/.test(document.body.innerText)", timeout=20_000)
            except Exception:  # noqa: BLE001 - Playwright's TimeoutError; the counter is then checked as absent
                pass
            counts = [int(n) for n in re.findall(r"of\s+(\d+)", page.inner_text("body"))]
            frames = max(counts) if counts else 0
            # answer with the mouse: Q1 Yes, Q2 No, then Submit
            choices = page.locator("label:has(input[type=radio])")
            assert choices.all_inner_texts()[:3] == ["Yes[1]", "No[2]", "Can't tell / clip does not play[3]"]
            choices.nth(0).click()
            choices.nth(4).click()
            page.get_by_test_id("bottombar-submit-button").click()
            page.wait_for_timeout(2000)
            answered = [t for t in rater.export(mine) if t["annotations"]]
            assert len(answered) == 1
            (ann,) = answered[0]["annotations"]
            assert ann["completed_by"] == account.user_id
            got = {r["from_name"]: r["value"]["choices"] for r in ann["result"]}
            assert got == {"onscreen": ["Yes"], "offscreen": ["No"]}
            labeled_clip, task_id, fps = answered[0]["data"]["clip_id"], answered[0]["id"], answered[0]["data"]["fps"]
            # the player is told the clip's own frame rate (not Label Studio's default 24 fps) ...
            assert 'frameRate="$fps"' in rater.project(mine)["label_config"]
            (mp4,) = (labelstudio.root / "media").rglob(f"{labeled_clip}.mp4")
            rate = subprocess.run(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=avg_frame_rate",
                 "-of", "csv=p=0", str(mp4)], capture_output=True, text=True, check=True,
            ).stdout.strip().split("/")  # fmt: skip
            assert fps == pytest.approx(float(rate[0]) / float(rate[1] if len(rate) > 1 else 1), abs=0.01)
            # ... and, where its frame counter shows, counts the clip's own frames
            if frames > 4:
                assert abs(frames - 5 * fps) <= 2, (frames, fps)

            # the other raters answer (through the API, as themselves); the pull counts the browser's answer
            assert cli.main(["annotate", "demo-raters", "--annotations", str(pushed), *labelstudio.args()]) == 0
            assert cli.main(["annotate", "pull", "--annotations", str(pushed), *labelstudio.args()]) == 0
            votes = pd.read_parquet(pushed / "votes.parquet")
            mine_vote = votes[(votes["clip_id"] == labeled_clip) & (votes["rater"] == account.email)]
            assert len(mine_vote) == 1 and bool(mine_vote.iloc[0]["onscreen"]) and not bool(mine_vote.iloc[0]["offscreen"])
            others_votes = votes[(votes["clip_id"] == labeled_clip) & (votes["rater"] != account.email)]
            assert len(others_votes) == 2  # three distinct raters on the clip

            # as rater 1, in the browser's session: nothing of the others is reachable
            api = page.request
            listed = api.get(f"{labelstudio.url}/api/projects/").json()
            listed = listed.get("results", listed) if isinstance(listed, dict) else listed
            # (the server is shared by the module's tests, each giving every rater a project of
            # their own: rater 1 lists this one and none that another rater can see)
            listed_ids = {p["id"] for p in listed}
            assert mine in listed_ids
            for other in (r for r in RATERS if r != me):
                assert not listed_ids & {p["id"] for p in labelstudio.client(other).projects()}
            users = api.get(f"{labelstudio.url}/api/users/").json()
            assert [u["email"] for u in users] == [account.email]
            for other in (r for r in RATERS if r != me):
                pid = projects[other]["project_id"]
                assert api.get(f"{labelstudio.url}/api/projects/{pid}/").status in (403, 404)
                assert api.get(f"{labelstudio.url}/api/projects/{pid}/export?exportType=JSON").status in (403, 404)
                for tid in labelstudio.client(other).task_ids(pid)[:2]:
                    assert api.get(f"{labelstudio.url}/api/tasks/{tid}/").status in (403, 404)
                    assert api.get(f"{labelstudio.url}/api/tasks/{tid}/annotations/").status in (403, 404)
                page.goto(f"{labelstudio.url}/projects/{pid}/data")
                assert "in the browser" not in page.inner_text("body") or page.url.rstrip("/").endswith("/projects")
            task = api.get(f"{labelstudio.url}/api/tasks/{task_id}/").json()
            assert set(task["data"]) == {"video", "clip_id", "fps"}
            body = json.dumps(task)
            for leak in ("pool", "split", "source_uri", "filtered_", "unfiltered_", str(labelstudio.root)):
                assert leak not in body, leak
            # "Compare all": the task has exactly one annotation, the rater's own
            authors = [a["completed_by"] for a in task.get("annotations") or []]
            authors = [a["id"] if isinstance(a, dict) else a for a in authors]  # an id, or the user expanded
            assert authors in ([], [account.user_id])
            # admin pages of the server are refused to a rater
            assert api.get(f"{labelstudio.url}/admin/", max_redirects=0).status in (302, 403, 404)
            orgs = api.get(f"{labelstudio.url}/api/organizations/").json()
            orgs = orgs.get("results", orgs) if isinstance(orgs, dict) else orgs
            assert [o["id"] for o in orgs] == [account.organization_id]
        finally:
            browser.close()

