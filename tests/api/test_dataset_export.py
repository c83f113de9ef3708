"""GET /api/export/dataset.zip and `aoi-agent dataset verify`: real DeepPCB boards
uploaded with board context, some regions judged, the ZIP opened and checked."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.support import AgentServer, run_cli

WHO = {"X-Reviewer": "dataset-test"}
# (board serial or None, lot): boards 0-3 are inspected again in lot L9 after repair.
BOARDS = [
    ("SN-0", "L1"),
    ("SN-1", "L2"),
    ("SN-2", "L3"),
    ("SN-3", "L4"),
    ("SN-4", "L5"),
    ("SN-5", "L6"),
    (None, "L7"),
    (None, None),
    ("SN-0", "L9"),
    ("SN-1", "L9"),
    ("SN-2", "L9"),
    ("SN-3", "L9"),
]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def judged(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """Twelve real boards uploaded one by one with context, and verdicts on the first
    three boards' regions: real, false_call, unsure in turn (the others unjudged)."""
    verdicts: dict[int, str] = {}
    ids: list[str] = []
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        for number, (serial, lot) in enumerate(BOARDS):
            image = deeppcb[40 + number]
            context = {k: v for k, v in (("board_serial", serial), ("lot", lot)) if v}
            answer = c.post(
                "/api/upload", files={"image": (image.name, image.read_bytes())}, data=context
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["img_unique_id"])
        turn = ("real", "false_call", "unsure")
        for img_id in ids[:3]:
            regions = c.get(f"/api/images/{img_id}/regions").json()
            for group in regions["classes"]:
                for region in group["regions"]:
                    verdict = turn[len(verdicts) % 3]
                    put = c.put(
                        f"/api/regions/{region['region_unique_id']}/verdict",
                        json={"verdict": verdict},
                        headers=WHO,
                    )
                    assert put.status_code == 200, put.text
                    verdicts[region["region_unique_id"]] = verdict
    assert {"real", "false_call", "unsure"} <= set(verdicts.values())
    return {"ids": ids, "verdicts": verdicts}


def _export(client: httpx2.Client, **params: object) -> zipfile.ZipFile:
    response = client.get("/api/export/dataset.zip", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    return zipfile.ZipFile(io.BytesIO(response.content))


def _cocos(archive: zipfile.ZipFile, tmp_path: Path) -> dict[str, tuple[COCO, dict[str, Any]]]:
    found = {}
    for split in SPLITS:
        data = archive.read(f"annotations/{split}.json")
        path = tmp_path / f"{split}.json"
        path.write_bytes(data)
        found[split] = (COCO(str(path)), json.loads(data))
    return found


def test_dataset_zip_holds_inputs_labels_coco_and_a_true_manifest(
    client: httpx2.Client, judged: dict[str, Any], tmp_path: Path
) -> None:
    archive = _export(client, ratios="50,25,25")
    manifest = json.loads(archive.read("manifest.json"))
    # The manifest lists every other file with its true SHA-256 and size.
    listed = {f["path"]: f for f in manifest["files"]}
    members = {i.filename for i in archive.infolist()} - {"manifest.json"}
    assert set(listed) == members
    for name, entry in listed.items():
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["size"]
    assert manifest["format"] == "aoi-dataset/1"
    assert manifest["agent_version"]
    assert manifest["split"]["by"] == "lot"
    assert manifest["split"]["ratios"] == {"train": 0.5, "val": 0.25, "test": 0.25}
    assert manifest["query"] == "/api/export/dataset.zip?ratios=50%2C25%2C25"

    cocos = _cocos(archive, tmp_path)
    images = {
        img["img_unique_id"]: (split, img) for split, (_, d) in cocos.items() for img in d["images"]
    }
    assert set(images) == set(judged["ids"])
    assert sum(c["images"] for c in manifest["counts"].values()) == len(judged["ids"])
    # Every input is the stored one, byte for byte.
    for img_id, (split, entry) in images.items():
        assert entry["file_name"].startswith(f"images/{split}/")
        stored = client.get(f"/api/download/image/{img_id}/input").content
        assert archive.read(entry["file_name"]) == stored

    # Annotations: judged regions as judged, the rest marked unreviewed (ignore regions).
    verdicts = judged["verdicts"]
    seen: dict[int, str] = {}
    for coco, data in cocos.values():
        names = {c["id"]: c["name"] for c in data["categories"]}
        assert list(names.values()) == sorted(names.values())
        for ann in data["annotations"]:
            seen[ann["region_unique_id"]] = ann["review"]
            assert ann["review"] in ("real", "unsure", "unreviewed")
            assert ann["iscrowd"] == (0 if ann["review"] == "real" else 1)
            assert ann["segmentation_from"] == "mask"
            assert coco.annToMask(ann).sum() == ann["area"]  # RLE has the region's pixels
        for ann in data["hard_negatives"]:
            seen[ann["region_unique_id"]] = ann["review"]
            assert ann["review"] == "false_call"
    for region, verdict in verdicts.items():
        assert seen[region] == verdict
    assert set(seen.values()) == {"real", "false_call", "unsure", "unreviewed"}
    assert all(v == "unreviewed" for r, v in seen.items() if r not in verdicts)

    # Label masks: category id where real, 0 on false calls, 255 on unjudged/unsure.
    for coco, data in cocos.values():
        for img in data["images"]:
            label = np.asarray(Image.open(io.BytesIO(archive.read(img["mask_file"]))))
            assert label.shape == (img["height"], img["width"])
            anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
            negatives = [a for a in data["hard_negatives"] if a["image_id"] == img["id"]]
            for ann in anns:
                pixels = coco.annToMask(ann).astype(bool)
                want = ann["category_id"] if ann["review"] == "real" else 255
                assert (label[pixels] == want).all()
            for ann in negatives:
                assert (label[coco.annToMask(ann).astype(bool)] == 0).all()
            if not anns:
                assert (label == 0).all()


def test_split_never_puts_one_board_in_two_splits(
    client: httpx2.Client, judged: dict[str, Any], tmp_path: Path
) -> None:
    for split_by in ("lot", "day"):
        archive = _export(client, split_by=split_by, ratios="34,33,33")
        splits_of_board: dict[str, set[str]] = defaultdict(set)
        splits_of_unit: dict[str, set[str]] = defaultdict(set)
        for split, (_, data) in _cocos(archive, tmp_path).items():
            for img in data["images"]:
                splits_of_board[img["board"]].add(split)
                splits_of_unit[img["split_unit"]].add(split)
        assert all(len(s) == 1 for s in splits_of_board.values()), splits_of_board
        assert all(len(s) == 1 for s in splits_of_unit.values())
        # 8 serials' boards and 2 without serial (each its own board).
        assert len(splits_of_board) == 8
        if split_by == "lot":
            # A re-inspected board goes by the lot of its first inspection, not L9.
            units = {b: u for b, u in _units(archive).items()}
            assert units["SN-0"] == {"lot:L1"}
            assert "lot:L9" not in set().union(*units.values())
        else:
            assert all(u.startswith("day:") for u in splits_of_unit)


def _units(archive: zipfile.ZipFile) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for split in SPLITS:
        for img in json.loads(archive.read(f"annotations/{split}.json"))["images"]:
            units[img["board"]].add(img["split_unit"])
    return units


def test_the_same_query_rebuilds_the_same_files_and_filters_apply(
    client: httpx2.Client, judged: dict[str, Any]
) -> None:
    first = json.loads(_export(client, lot="L9").read("manifest.json"))
    again = json.loads(_export(client, lot="L9").read("manifest.json"))
    assert first["files"] == again["files"]
    assert first["filters"] == {"context": {"lot": "L9"}}
    assert sum(c["images"] for c in first["counts"].values()) == 4
    by_version = client.get(
        "/api/export/dataset.zip", params={"model_version": "no-such-version"}
    ).content
    counts = json.loads(zipfile.ZipFile(io.BytesIO(by_version)).read("manifest.json"))["counts"]
    assert sum(c["images"] for c in counts.values()) == 0
    reviewed = json.loads(_export(client, review_state="reviewed").read("manifest.json"))
    assert sum(c["images"] for c in reviewed["counts"].values()) == 3


def test_bad_options_are_422_and_head_reads_nothing(client: httpx2.Client) -> None:
    for params in ({"ratios": "1,2"}, {"ratios": "0,0,0"}, {"ratios": "a,b,c"}, {"split_by": "x"}):
        answer = client.get("/api/export/dataset.zip", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["error"]
    head = client.head("/api/export/dataset.zip")
    assert head.status_code == 200
    assert head.content == b""


def test_cli_verify_accepts_the_zip_and_finds_a_changed_file(
    client: httpx2.Client, judged: dict[str, Any], tmp_path: Path
) -> None:
    good = tmp_path / "set.zip"
    good.write_bytes(client.get("/api/export/dataset.zip").content)
    ok = run_cli("dataset", "verify", str(good), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"]
    assert report["checked"] == len(judged["ids"]) * 2 + 4
    # The same set with one label mask changed and one extra file.
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        changed = next(n for n in src.namelist() if n.startswith("masks/"))
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + b"x" if name == changed else data)
        dst.writestr("extra.txt", b"hello")
    failed = run_cli("dataset", "verify", str(bad))
    assert failed.returncode == 1
    assert f"{changed}: SHA-256 differs" in failed.stderr
    assert "extra.txt: not in the manifest" in failed.stderr
