"""Video lists in the published formats, prepared here by hand.

The expected multimedia-commons keys and paths are computed in this file with
its own loop (not with the project's code), so a wrong key rule cannot pass by
agreeing with itself.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audioscope.sources.lists import (
    BadRow,
    VideoRequest,
    detect_format,
    mmcommons_key,
    mmcommons_path,
    read_video_list,
)

YFCC_COLUMNS = [
    "photoid", "uid", "unickname", "datetaken", "dateuploaded", "capturedevice", "title",
    "description", "usertags", "machinetags", "longitude", "latitude", "accuracy", "pageurl",
    "downloadurl", "licensename", "licenseurl", "serverid", "farmid", "secret",
    "secretoriginal", "ext", "marker",
]  # fmt: skip


def independent_key(url: str) -> str:
    """MD5 hex with every byte's leading zero dropped, written out longhand."""
    out = ""
    for byte in hashlib.md5(url.encode()).digest():
        hi, lo = divmod(byte, 16)
        digits = "0123456789abcdef"
        out += (digits[hi] if hi else "") + digits[lo]
    return out


def short_key_url() -> str:
    """A download URL whose MD5 has a byte below 0x10 (so its key is short)."""
    for i in range(1000):
        url = f"http://farm3.staticflickr.com/2/{5000 + i}_abc_o.mp4"
        if len(independent_key(url)) < 32:
            return url
    raise AssertionError("no short key found")  # pragma: no cover


def yfcc_row(photoid: int, url: str, marker: int, licence: str = "Attribution License") -> list[str]:
    values = {c: "" for c in YFCC_COLUMNS}
    values.update(
        photoid=str(photoid), uid="12345678@N00", unickname="some+user", title="a+title",
        downloadurl=url, licensename=licence,
        licenseurl="http://creativecommons.org/licenses/by/2.0/", ext="mp4", marker=str(marker),
    )
    return [values[c] for c in YFCC_COLUMNS]


def test_the_spec_example_key_is_31_characters_and_its_path():
    key = "827f6b53467db2d5218ed8247418c4c"
    assert mmcommons_path(key) == "data/videos/mp4/827/f6b/827f6b53467db2d5218ed8247418c4c.mp4"


def test_unpadded_key_matches_an_independent_computation():
    url = short_key_url()
    assert len(independent_key(url)) < 32
    assert mmcommons_key(url) == independent_key(url)


@given(st.text(min_size=1, max_size=80))
def test_unpadded_key_is_padded_hex_without_leading_zeros(url):
    padded = hashlib.md5(url.encode()).hexdigest()
    expected = "".join(padded[i : i + 2].lstrip("0") or "0" for i in range(0, 32, 2))
    assert mmcommons_key(url) == expected


def test_yfcc_tsv_keeps_videos_only_with_key_paths_and_licences(tmp_path):
    vid_url = short_key_url()
    tsv = tmp_path / "yfcc100m_dataset"
    rows = [
        yfcc_row(1, "http://farm1.staticflickr.com/1/1_a_o.jpg", 0),
        yfcc_row(2, vid_url, 1, "Attribution-NonCommercial-NoDerivs License"),
        ["only", "three", "columns"],
    ]
    tsv.write_text("".join("\t".join(r) + "\n" for r in rows))
    assert detect_format(str(tsv)) == "yfcc"
    items = list(read_video_list(str(tsv), media_root="gs://multimedia-commons"))
    reqs = [i for i in items if isinstance(i, VideoRequest)]
    bad = [i for i in items if isinstance(i, BadRow)]
    key = independent_key(vid_url)
    assert [r.video_id for r in reqs] == [key]
    assert reqs[0].uri == f"gs://multimedia-commons/data/videos/mp4/{key[:3]}/{key[3:6]}/{key}.mp4"
    assert reqs[0].licence_name == "Attribution-NonCommercial-NoDerivs License"
    assert reqs[0].licence_url == "http://creativecommons.org/licenses/by/2.0/"
    assert reqs[0].spans is None
    assert reqs[0].relative == f"data/videos/mp4/{key[:3]}/{key[3:6]}/{key}.mp4"
    assert len(bad) == 1 and bad[0].kind == "bad_row"


def test_yfcc_sqlite_is_read_like_the_tsv(tmp_path):
    url = short_key_url()
    db = tmp_path / "yfcc100m_dataset.sql"
    con = sqlite3.connect(db)
    con.execute(f"CREATE TABLE yfcc100m_dataset ({', '.join(c + ' TEXT' for c in YFCC_COLUMNS)})")
    con.executemany(
        f"INSERT INTO yfcc100m_dataset VALUES ({', '.join('?' * 23)})",
        [yfcc_row(1, url, 1), yfcc_row(2, "http://x/2.jpg", 0)],
    )
    con.commit()
    con.close()
    assert detect_format(str(db)) == "yfcc"
    reqs = [i for i in read_video_list(str(db), media_root=str(tmp_path)) if isinstance(i, VideoRequest)]
    assert [r.video_id for r in reqs] == [independent_key(url)]


def test_audioscope_csv_groups_spans_and_keeps_the_published_split(tmp_path):
    k1, k2 = "827f6b53467db2d5218ed8247418c4c", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
    p1 = f"data/videos/mp4/827/f6b/{k1}.mp4"
    p2 = f"data/videos/mp4/1a2/b3c/{k2}.mp4"
    csv = tmp_path / "filtered_validate_clips.csv"
    csv.write_text(f"{p1},10.0,15.0\n{p2},0,5\n{p1},3.0,8.0\n{p1},10.0,15.0\n")
    assert detect_format(str(csv)) == "audioscope-csv"
    reqs = {r.video_id: r for r in read_video_list(str(csv), media_root="/data/mmc")}
    assert set(reqs) == {k1, k2}
    assert reqs[k1].spans == ((3.0, 8.0), (10.0, 15.0))
    assert reqs[k1].split == "validation"
    assert reqs[k1].uri == f"/data/mmc/{p1}"


def test_mom_pair_lists_give_both_halves(tmp_path):
    p1 = "data/videos/mp4/aaa/bbb/aaabbbccc.mp4"
    p2 = "data/videos/mp4/ddd/eee/dddeeefff.mp4"
    csv = tmp_path / "filtered_test_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv"
    csv.write_text(f"{p1},1.0,6.0,{p2},2.0,7.0\n")
    reqs = {r.video_id: r for r in read_video_list(str(csv), media_root="/m")}
    assert reqs["aaabbbccc"].spans == ((1.0, 6.0),)
    assert reqs["dddeeefff"].spans == ((2.0, 7.0),)
    assert reqs["aaabbbccc"].split == "test"


@pytest.mark.parametrize(
    "line,kind",
    [
        ("../outside.mp4", "unsafe_path"),
        ("videos/../../etc/passwd", "unsafe_path"),
        ("/etc/passwd", "unsafe_path"),
        ("ftp://host/video.mp4", "unsafe_path"),
        ("javascript:alert(1)", "unsafe_path"),
    ],
)
def test_hostile_entries_become_bad_rows(tmp_path, line, kind):
    lst = tmp_path / "list.txt"
    lst.write_text(f"good.mp4\n{line}\n")
    items = list(read_video_list(str(lst), fmt="uris", media_root=str(tmp_path)))
    assert isinstance(items[0], VideoRequest) and items[0].uri == str(tmp_path / "good.mp4")
    assert isinstance(items[1], BadRow), items[1]
    assert items[1].kind in (kind, "unsupported_uri")
    assert items[1].message


def test_control_characters_and_duplicate_ids(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"a/clip.mp4\nb/clip.mp4\nbad\x01name.mp4\n")
    items = list(read_video_list(str(lst), fmt="uris", media_root=str(tmp_path)))
    assert isinstance(items[0], VideoRequest) and items[0].video_id == "clip"
    kinds = sorted(i.kind for i in items if isinstance(i, BadRow))
    assert "duplicate_id" in kinds and len(kinds) == 2
    dup = next(i for i in items if isinstance(i, BadRow) and i.kind == "duplicate_id")
    assert "video_id" in dup.message  # says how to fix it


def test_uris_csv_with_header_carries_ids_licences_and_splits(tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text(
        "uri,video_id,licence_name,licence_url,split\n"
        "videos/x.mp4,vid-x,CC0 1.0,https://creativecommons.org/publicdomain/zero/1.0/,train\n"
        "https://example.invalid/watch?v=abc,,,,\n"
    )
    items = list(read_video_list(str(lst), media_root=str(tmp_path)))
    assert all(isinstance(i, VideoRequest) for i in items), items
    assert items[0].video_id == "vid-x" and items[0].split == "train"
    assert items[0].licence_name == "CC0 1.0"
    assert items[1].video_id.startswith("watch-")  # a query URL gets a hash suffix


def test_a_request_knows_its_path_below_the_root_and_its_video_under_another_root(tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text(f"uri,video_id\nvideos/./x.mp4,x\n{tmp_path}/media/y.mp4,y\n/elsewhere/z.mp4,z\n")
    under_list = {r.video_id: r for r in read_video_list(str(lst))}  # relative to the list's folder
    assert under_list["x"].uri == f"{tmp_path}/videos/x.mp4" and under_list["x"].relative == "videos/x.mp4"
    assert under_list["y"].relative == "media/y.mp4" and under_list["z"].relative == ""
    remote = {r.video_id: r for r in read_video_list(str(lst), media_root="gs://bucket/corpus/", allow_outside_root=True)
              if isinstance(r, VideoRequest)}
    x = remote["x"]
    assert (x.uri, x.relative) == ("gs://bucket/corpus/videos/./x.mp4", "videos/./x.mp4")
    # the store's source of the same id: the same location, or the same path below another root
    assert x.names(x.uri) and x.names("/mnt/old-disk/corpus/videos/./x.mp4", "videos/./x.mp4")
    assert not x.names("/mnt/old-disk/corpus/videos/./x.mp4", "corpus/videos/./x.mp4")
    assert not x.names("/mnt/old-disk/corpus/videos/./x.mp4")  # a store's video of unknown root
    assert not under_list["z"].names("/other/z.mp4", "")  # an absolute path outside the root: only itself


def test_requests_round_trip_through_json():
    r = VideoRequest(
        video_id="v", uri="/x/v.mp4", spans=((1.0, 6.0),), split="test",
        licence_name="L", licence_url="U", origin="list.csv:3", relative="v.mp4",
    )
    assert VideoRequest.from_json(r.to_json()) == r
    older = r.to_json().replace(', "relative": "v.mp4"', "")  # a request written before the field
    assert "relative" not in older and VideoRequest.from_json(older).relative == ""
    b = BadRow(origin="list.csv:4", kind="bad_row", message="m", raw="r")
    assert BadRow.from_json(b.to_json()) == b


# ------------------------------------------------------------ end to end, real ffmpeg


def _video(path: Path, seconds: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
         "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )


@pytest.mark.integration
def test_yfcc_and_audioscope_lists_ingest_with_unpadded_key_paths(tmp_path):
    from audioscope.cli import main
    from audioscope.clipstore import ClipStore

    url = short_key_url()
    key = independent_key(url)
    root = tmp_path / "mmc"
    _video(root / "data" / "videos" / "mp4" / key[:3] / key[3:6] / f"{key}.mp4", 8)

    tsv = tmp_path / "yfcc100m_dataset"
    tsv.write_text("\t".join(yfcc_row(7, url, 1)) + "\n" + "\t".join(yfcc_row(8, "http://x/p.jpg", 0)) + "\n")
    store = tmp_path / "store-yfcc"
    assert main(["ingest", str(tsv), "--media-root", str(root), "--out", str(store)]) == 0
    index = ClipStore.open(str(store)).index
    assert sorted(index["start"].tolist()) == [0.0, 1.0, 2.0, 3.0]  # floor(8 - 5) + 1 clips
    assert set(index["video_id"]) == {key}
    assert set(index["licence_name"]) == {"Attribution License"}

    csv = tmp_path / "filtered_test_clips.csv"
    rel = f"data/videos/mp4/{key[:3]}/{key[3:6]}/{key}.mp4"
    csv.write_text(f"{rel},2.0,7.0\n{rel},0.0,5.0\n")
    store2 = tmp_path / "store-csv"
    assert main(["ingest", str(csv), "--media-root", str(root), "--out", str(store2)]) == 0
    idx2 = ClipStore.open(str(store2)).index.sort_values("start")
    assert idx2["start"].tolist() == [0.0, 2.0]  # only the listed clips
    assert set(idx2["split"]) == {"test"}


@pytest.mark.integration
def test_bad_rows_reach_the_status_table_and_the_run_goes_on(tmp_path):
    from audioscope.cli import main
    from audioscope.clipstore import ClipStore

    _video(tmp_path / "media" / "good.mp4", 6)
    lst = tmp_path / "list.txt"
    lst.write_text("good.mp4\n../../etc/passwd\nmissing.mp4\n")
    store = tmp_path / "store"
    assert main(["ingest", str(lst), "--media-root", str(tmp_path / "media"), "--out", str(store)]) == 0
    cs = ClipStore.open(str(store))
    assert set(cs.index["video_id"]) == {"good"} and len(cs.index) == 2
    status = cs.status
    bad = status[status["status"] != "ok"]
    assert len(bad) == 2, status
    kinds = set(bad["kind"])
    assert "unsafe_path" in kinds and "not_found" in kinds
    assert all(isinstance(m, str) and m for m in bad["message"])
