"""Pull's counting rules on fake exported tasks: latest vote per rater, cancelled and incomplete dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from audioscope.annotation.pull import PullCounts, aggregate, answer, final_label, task_votes
from audioscope.annotation.raters import annotation_body
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

USERS = {1: "admin@x", 2: "ann@x", 3: "bob@x", 4: "cyd@x", 5: "dee@x"}


def ann(aid: int, who: object, on: bool | None, off: bool | None, updated: str = "2026-01-01T00:00:00Z", **extra):
    result = [r for r in annotation_body(bool(on), bool(off), 3.0)["result"]]
    if on is None:
        result = [r for r in result if r["from_name"] != "onscreen"]
    if off is None:
        result = [r for r in result if r["from_name"] != "offscreen"]
    return {"id": aid, "completed_by": who, "result": result, "updated_at": updated, "lead_time": 3.0 + aid,
            "was_cancelled": False, **extra}  # fmt: skip


def task(tid: int, clip: str, annotations: list, split: str = "train", start: float = 0.0):
    data = {"clip_id": clip, "video_id": clip.rsplit("-", 1)[0], "start": start, "end": start + 5, "split": split,
            "pool": "filtered_train", "source_uri": f"/v/{clip}.mp4", "licence_name": "CC0", "licence_url": None,
            "video": f"/data/local-files/?d=m/{clip}.mp4"}  # fmt: skip
    return {"id": tid, "data": data, "annotations": annotations}


def test_latest_annotation_of_a_rater_counts_once():
    t = task(10, "v-0000000", [
        ann(1, 2, True, False, "2026-01-01T10:00:00Z"),
        ann(2, 2, False, True, "2026-01-01T11:00:00Z"),  # later: counts
        ann(3, 2, True, True, "2026-01-01T09:00:00Z"),
    ])  # fmt: skip
    counts = PullCounts()
    votes = task_votes(t, USERS, counts)
    assert len(votes) == 1
    assert (votes[0]["annotation_id"], votes[0]["onscreen"], votes[0]["offscreen"]) == (2, False, True)
    assert (counts.annotations, counts.counted, counts.superseded) == (3, 1, 2)


def test_same_time_the_higher_id_wins_and_completed_by_may_be_an_object():
    t = task(10, "v-0000000", [ann(7, {"id": 3, "email": "bob@x"}, True, False), ann(8, 3, False, False)])
    votes = task_votes(t, USERS, PullCounts())
    assert [(v["annotation_id"], v["rater"]) for v in votes] == [(8, "bob@x")]


def test_cancelled_and_incomplete_annotations_are_dropped():
    t = task(10, "v-0000000", [
        ann(1, 2, True, False, was_cancelled=True),
        ann(2, 3, True, None),
        ann(3, 4, None, None),
        {"id": 4, "completed_by": None, "result": annotation_body(True, False, 1)["result"]},
        ann(5, 5, False, True),
    ])  # fmt: skip
    counts = PullCounts()
    votes = task_votes(t, USERS, counts)
    assert [v["rater"] for v in votes] == ["dee@x"]
    assert (counts.cancelled, counts.incomplete, counts.counted) == (1, 3, 1)


def test_a_cancelled_later_annotation_does_not_hide_an_earlier_vote():
    t = task(10, "v-0000000", [ann(1, 2, True, False, "2026-01-01T10:00:00Z"),
                               ann(2, 2, False, True, "2026-01-02T10:00:00Z", was_cancelled=True)])  # fmt: skip
    votes = task_votes(t, USERS, PullCounts())
    assert [(v["annotation_id"], v["onscreen"]) for v in votes] == [(1, True)]


def test_answer_reads_only_one_yes_or_no():
    result = annotation_body(True, False, 1)["result"]
    assert answer(result, "onscreen") is True and answer(result, "offscreen") is False
    assert answer([{"from_name": "onscreen", "value": {"choices": ["Yes", "No"]}}], "onscreen") is None
    assert answer([{"from_name": "onscreen", "value": {"choices": ["Maybe"]}}], "onscreen") is None
    assert answer([], "onscreen") is None


@pytest.mark.parametrize(
    "on,off,label",
    [
        ([True] * 3, [False] * 3, LABEL_ONSCREEN_ONLY),
        ([False] * 3, [True] * 3, LABEL_OFFSCREEN_ONLY),
        ([True] * 3, [True] * 3, None),  # both: not a label
        ([False] * 3, [False] * 3, None),  # neither
        ([True, True, False], [False] * 3, None),  # not unanimous
        ([True] * 2, [False] * 2, None),  # two raters only
        ([True] * 4, [False] * 4, None),  # not exactly three
    ],
)
def test_final_label_needs_three_agreeing_raters(on, off, label):
    assert final_label(on, off) == label


def test_aggregate_builds_schema_tables_with_every_task():
    tasks = [
        task(1, "b-0002000", [ann(1, 4, True, False), ann(2, 2, True, False), ann(3, 3, True, False)], start=2.0),
        task(2, "a-0000000", [ann(4, 2, False, True), ann(5, 3, False, True)], split="validation"),
        task(3, "a-0001000", [], split="test", start=1.0),
    ]
    votes, labels, counts = aggregate(tasks, USERS)
    assert counts.tasks == 3 and counts.counted == 5
    assert labels["clip_id"].tolist() == ["a-0000000", "a-0001000", "b-0002000"]
    assert labels["n_votes"].tolist() == [2, 0, 3]
    b = labels.iloc[2]
    assert list(b["raters"]) == ["ann@x", "bob@x", "cyd@x"]  # sorted by name, votes parallel
    assert b["label"] == LABEL_ONSCREEN_ONLY
    assert labels["label"].isna().tolist() == [True, True, False]
    assert votes["clip_id"].tolist() == ["a-0000000", "a-0000000"] + ["b-0002000"] * 3
    assert isinstance(votes, pd.DataFrame) and votes["task_id"].tolist() == [2, 2, 1, 1, 1]


def test_tasks_without_a_clip_id_are_ignored():
    foreign = {"id": 9, "data": {"image": "x.jpg"}, "annotations": [ann(1, 2, True, False)]}
    votes, labels, counts = aggregate([foreign], USERS)
    assert votes.empty and labels.empty


class FakeServer:
    """What read_project asks: the listed task ids, the project's annotation count, the export by ids.

    ``drop`` tasks are left out of the next ``bad_exports`` exports (an export answering 200 with less)."""

    def __init__(self, tasks: dict[int, dict], drop: int = 0, bad_exports: int = 0) -> None:
        self.tasks, self.drop, self.bad_exports, self.exports = tasks, drop, bad_exports, 0
        self.url = "http://fake"

    def task_ids(self, project_id: int) -> list[int]:
        return sorted(self.tasks)

    def project(self, project_id: int) -> dict:
        return {"task_number": len(self.tasks), "total_annotations_number": sum(len(t["annotations"]) for t in self.tasks.values())}

    def export_pages(self, project_id: int, ids, page_size: int):
        self.exports += 1
        ids = list(ids)[self.drop :] if self.exports <= self.bad_exports else list(ids)
        for i in range(0, len(ids), page_size):
            yield [self.tasks[t] for t in ids[i : i + page_size]]


    def export(self, project_id: int) -> list:
        """The whole project in one request (page size 0)."""
        return [t for page in self.export_pages(project_id, sorted(self.tasks), 10**9) for t in page]


def _server(**kw) -> FakeServer:
    return FakeServer({i: task(i, f"v-{i:07d}", [ann(i, 2, True, False)]) for i in (1, 2, 3)}, **kw)


def test_an_export_with_fewer_tasks_is_read_again_then_refused():
    from audioscope.annotation.pull import ExportShrank, read_project

    once = _server(drop=1, bad_exports=1)
    assert [t["id"] for t in read_project(once, 7, 2, wait_s=0)] == [1, 2, 3] and once.exports == 2
    whole = _server(drop=2, bad_exports=1)
    assert [t["id"] for t in read_project(whole, 7, 0, wait_s=0)] == [1, 2, 3] and whole.exports == 2
    always = _server(drop=1, bad_exports=99)
    with pytest.raises(ExportShrank, match="1 of 3 listed tasks missing"):
        read_project(always, 7, 2, tries=3, wait_s=0)
    assert always.exports == 3


def test_a_whole_project_read_is_checked_against_the_projects_counts_without_listing_ids():
    from audioscope.annotation.pull import ExportShrank, read_project

    def no_listing(project_id: int) -> list[int]:
        raise AssertionError("a whole-project read takes the counts of the project record, not the task list")

    once = _server(drop=1, bad_exports=1)
    once.task_ids = no_listing
    assert [t["id"] for t in read_project(once, 7, 0, wait_s=0)] == [1, 2, 3] and once.exports == 2
    always = _server(drop=1, bad_exports=99)
    always.task_ids = no_listing
    with pytest.raises(ExportShrank, match="1 of 3 listed tasks missing, 2 of 3 annotations"):
        read_project(always, 7, 0, tries=2, wait_s=0)
    assert always.exports == 2


def test_a_project_record_without_a_task_count_falls_back_to_the_listed_ids():
    from audioscope.annotation.pull import ExportShrank, read_project

    server = _server(drop=1, bad_exports=99)
    server.project = lambda pid: {"total_annotations_number": 0}
    with pytest.raises(ExportShrank, match="1 of 3 listed tasks missing"):
        read_project(server, 7, 0, tries=2, wait_s=0)


def test_an_export_with_fewer_annotations_than_counted_is_refused():
    from audioscope.annotation.pull import ExportShrank, read_project

    server = _server()
    server.project = lambda pid: {"total_annotations_number": 5}  # the server counts more than it exports
    with pytest.raises(ExportShrank, match="3 of 5 annotations"):
        read_project(server, 7, 2, tries=2, wait_s=0)


def test_two_tasks_of_one_clip_give_one_vote_per_rater_and_cant_tell_is_not_a_vote():
    from audioscope.annotation.pull import collect
    from audioscope.annotation.push import CANT_TELL

    unsure = ann(3, 3, True, True, "2026-01-01T12:00:00Z")
    unsure["result"][1]["value"]["choices"] = [CANT_TELL]
    tasks = [
        task(1, "v-0000000", [ann(1, 2, True, False, "2026-01-01T10:00:00Z")]),
        task(2, "v-0000000", [ann(2, 2, False, True, "2026-01-01T11:00:00Z"), unsure, ann(4, 4, True, False)]),
    ]
    counts = PullCounts()
    votes, cant = collect(tasks, USERS, counts, only_user=2)
    assert [(v["annotation_id"], v["rater"]) for v in votes] == [(2, "ann@x")]  # the later of two tasks
    assert (counts.duplicate_tasks, counts.superseded, counts.foreign) == (1, 1, 2) and cant == []
    counts = PullCounts()
    votes, cant = collect(tasks, USERS, counts)
    assert [c["annotation_id"] for c in cant] == [3] and counts.cant_tell == 1
    assert sorted(v["rater"] for v in votes) == ["ann@x", "cyd@x"]
    assert answer(unsure["result"], "offscreen") is None
