"""Lists as they are shipped and saved: compressed, Excel CSV, quoted, odd names, 25-column YFCC."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import sqlite3

import pytest

from audioscope.sources.lists import (
    BadRow,
    VideoRequest,
    detect_format,
    mmcommons_key,
    read_video_list,
)

from .test_list_formats import YFCC_COLUMNS, independent_key, short_key_url, yfcc_row

K1 = "827f6b53467db2d5218ed8247418c4c"
P1 = f"data/videos/mp4/827/f6b/{K1}.mp4"
K2 = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
P2 = f"data/videos/mp4/1a2/b3c/{K2}.mp4"
CLIPS = f"{P1},10.0,15.0\n{P2},0,5\n{P1},3.0,8.0\n"


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gz":
        return gzip.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _requests(items):
    return {i.video_id: i for i in items if isinstance(i, VideoRequest)}


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst"])
def test_compressed_lists_read_like_plain_ones(tmp_path, kind):
    plain = tmp_path / "filtered_test_clips.csv"
    plain.write_text(CLIPS)
    packed = tmp_path / f"filtered_test_clips.csv.{kind}"
    packed.write_bytes(_compress(kind, CLIPS.encode()))
    assert detect_format(str(packed)) == "audioscope-csv"
    a = list(read_video_list(str(plain), media_root="/m"))
    b = list(read_video_list(str(packed), media_root="/m"))
    assert [(r.video_id, r.spans, r.split) for r in a] == [(r.video_id, r.spans, r.split) for r in b]
    assert _requests(b)[K1].spans == ((3.0, 8.0), (10.0, 15.0))


def test_compressed_yfcc_metadata_keeps_its_videos(tmp_path):
    url = short_key_url()
    text = "\t".join(yfcc_row(1, url, 1)) + "\n" + "\t".join(yfcc_row(2, "http://x/p.jpg", 0)) + "\n"
    packed = tmp_path / "yfcc100m_dataset-0.bz2"
    packed.write_bytes(bz2.compress(text.encode()))
    assert detect_format(str(packed)) == "yfcc"
    reqs = _requests(read_video_list(str(packed), media_root="s3://multimedia-commons"))
    assert list(reqs) == [independent_key(url)]


def test_excel_bom_and_crlf_lose_no_row(tmp_path):
    lst = tmp_path / "filtered_train_clips.csv"
    lst.write_bytes(b"\xef\xbb\xbf" + CLIPS.replace("\n", "\r\n").encode())
    assert detect_format(str(lst)) == "audioscope-csv"
    items = list(read_video_list(str(lst), media_root="/m"))
    assert not [i for i in items if isinstance(i, BadRow)], items
    reqs = _requests(items)
    assert set(reqs) == {K1, K2}  # the first row's path is not read as "\ufeffdata/..."
    assert reqs[K1].uri == f"/m/{P1}" and reqs[K1].spans == ((3.0, 8.0), (10.0, 15.0))


def test_bom_and_header_with_quoted_fields(tmp_path):
    lst = tmp_path / "list.csv"
    text = 'video_path,start,end\r\n"' + P1 + '","10.0","15.0"\r\n' + P2 + ",0,5\r\n"
    lst.write_bytes(b"\xef\xbb\xbf" + text.encode())
    reqs = _requests(read_video_list(str(lst), fmt="audioscope-csv", media_root="/m"))
    assert reqs[K1].spans == ((10.0, 15.0),) and reqs[K2].spans == ((0.0, 5.0),)


def test_uris_header_after_a_bom(tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_bytes(b"\xef\xbb\xbfuri,video_id\r\nvideos/x.mp4,vid-x\r\n")
    items = list(read_video_list(str(lst), media_root=str(tmp_path)))
    assert [(i.video_id, i.uri) for i in items] == [("vid-x", str(tmp_path / "videos" / "x.mp4"))]


def test_names_with_hash_spaces_and_accents(tmp_path):
    """A leading '#' is a name unless followed by a space; quoted names keep their commas."""
    folder = tmp_path / "listes été #1"
    folder.mkdir()
    lst = folder / "#vidéos à voir.txt"
    lst.write_text('# a comment\n#clip.mp4\nmy video.mp4\nvidéo.mp4\n"a, b.mp4"\n')
    items = list(read_video_list(str(lst), fmt="uris", media_root=str(tmp_path)))
    assert all(isinstance(i, VideoRequest) for i in items), items
    uris = [i.uri for i in items]
    assert uris == [str(tmp_path / n) for n in ("#clip.mp4", "my video.mp4", "vidéo.mp4", "a, b.mp4")]
    ids = [i.video_id for i in items]
    assert len(set(ids)) == 4 and all(i.replace("-", "").replace("_", "").replace(".", "").isalnum() for i in ids)
    assert detect_format(str(lst)) == "uris"


def test_a_clip_row_whose_path_starts_with_hash_is_data(tmp_path):
    lst = tmp_path / "clips.csv"
    lst.write_text("# header comment\n#a.mp4,0,5\nb.mp4,5,10\n")
    reqs = _requests(read_video_list(str(lst), fmt="audioscope-csv", media_root=str(tmp_path)))
    assert {r.uri for r in reqs.values()} == {str(tmp_path / "#a.mp4"), str(tmp_path / "b.mp4")}


def test_spans_that_can_never_be_clips_are_refused_when_read(tmp_path):
    lst = tmp_path / "clips.csv"
    lst.write_text("a.mp4,0,5\na.mp4,1.5,6.5\na.mp4,2,4\nb.mp4,0,10\n")
    items = list(read_video_list(str(lst), fmt="audioscope-csv", media_root=str(tmp_path)))
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [b.kind for b in bad] == ["bad_span"] * 3
    assert [b.origin.rsplit(":", 1)[1] for b in bad] == ["2", "3", "4"]
    assert "whole second" in bad[0].message and "5 s" in bad[1].message
    assert _requests(items)["a"].spans == ((0.0, 5.0),)


# ------------------------------------------------------------------ YFCC100M, 25 columns


def _row25(line: int, url: str, marker: int, hash_: str | None = None) -> list[str]:
    row23 = yfcc_row(1000 + line, url, marker)
    return [str(line), row23[0], hash_ if hash_ is not None else mmcommons_key(url), *row23[1:]]


def test_25_column_metadata_checks_the_hash(tmp_path):
    good, padded_case, photo = short_key_url(), "http://farm5.staticflickr.com/4/9_x_o.mp4", "http://x/1.jpg"
    rows = [
        _row25(0, good, 1),
        _row25(1, padded_case, 1, hashlib.md5(padded_case.encode()).hexdigest()),  # zero-padded spelling
        _row25(2, photo, 0),
        _row25(3, "http://farm1.staticflickr.com/1/7_y_o.mp4", 1, "0" * 32),  # damaged
    ]
    tsv = tmp_path / "yfcc100m_dataset"
    tsv.write_text("".join("\t".join(r) + "\n" for r in rows))
    assert len(rows[0]) == 25 and detect_format(str(tsv)) == "yfcc"
    items = list(read_video_list(str(tsv), media_root="s3://multimedia-commons"))
    reqs = _requests(items)
    key = independent_key(good)
    assert list(reqs) == [key, independent_key(padded_case)]
    assert reqs[key].uri == f"s3://multimedia-commons/data/videos/mp4/{key[:3]}/{key[3:6]}/{key}.mp4"
    assert reqs[key].licence_name == "Attribution License"
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [(b.kind, b.origin.rsplit(":", 1)[1]) for b in bad] == [("hash_mismatch", "4")]


def test_25_column_sqlite(tmp_path):
    url = short_key_url()
    db = tmp_path / "yfcc100m_dataset.sql"
    con = sqlite3.connect(db)
    cols = ["linenumber", "photoid", "hash", *YFCC_COLUMNS[1:]]
    con.execute(f"CREATE TABLE yfcc100m_dataset ({', '.join(c + ' TEXT' for c in cols)})")
    con.executemany(f"INSERT INTO yfcc100m_dataset VALUES ({', '.join('?' * 25)})", [_row25(0, url, 1), _row25(1, "http://x/2.jpg", 0)])
    con.commit()
    con.close()
    reqs = _requests(read_video_list(str(db), media_root=str(tmp_path)))
    assert list(reqs) == [independent_key(url)]


# ------------------------------------------------------------------ confinement


@pytest.mark.parametrize(
    "entry",
    ["http://127.0.0.1/admin.mp4", "s3://other-bucket/v.mp4", "https://mirror.example/data/v.mp4",
     "https://mirror.example/databank/v.mp4", "https://mirror.example/data/../secret.mp4"],
)
def test_absolute_uris_outside_a_remote_root_are_refused(tmp_path, entry):
    lst = tmp_path / "list.txt"
    lst.write_text(f"https://media.example/data/ok.mp4\n{entry}\n")
    root = "https://media.example/data"
    items = list(read_video_list(str(lst), fmt="uris", media_root=root))
    assert isinstance(items[0], VideoRequest)
    assert isinstance(items[1], BadRow) and items[1].kind == "unsafe_path", items[1]
    assert "--allow-outside-root" in items[1].message or ".." in items[1].message
    if ".." not in entry:
        allowed = list(read_video_list(str(lst), fmt="uris", media_root=root, allow_outside_root=True))
        assert all(isinstance(i, VideoRequest) for i in allowed)


def test_symlinks_leaving_a_local_root_are_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    (root / "inside.mp4").write_bytes(b"x")
    os.symlink(outside / "secret.mp4", root / "link.mp4")
    os.symlink(outside, root / "dir")
    os.symlink(root / "inside.mp4", root / "alias.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text(f"inside.mp4\nlink.mp4\ndir/secret.mp4\n{root}/link.mp4\nalias.mp4\n")
    items = list(read_video_list(str(lst), fmt="uris", media_root=str(root)))
    kinds = [i.kind if isinstance(i, BadRow) else "ok" for i in items]
    assert kinds == ["ok", "unsafe_path", "unsafe_path", "unsafe_path", "ok"]


# ------------------------------------------------------------------ size


def test_a_list_of_many_rows_streams_through_disk(tmp_path):
    """Rows of one video far apart still group; the grouping lives on disk, not in a dict."""
    lst = tmp_path / "clips.csv"
    with open(lst, "w") as f:
        for k in range(20_000):
            f.write(f"v{k % 500:04d}.mp4,{5 * (k // 500)},{5 * (k // 500) + 5}\n")
    items = list(read_video_list(str(lst), fmt="audioscope-csv", media_root=str(tmp_path), workdir=str(tmp_path)))
    reqs = _requests(items)
    assert len(reqs) == 500 and len(items) == 500
    assert reqs["v0007"].spans == tuple((5.0 * i, 5.0 * i + 5) for i in range(40))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".sqlite")]  # temporary files removed
