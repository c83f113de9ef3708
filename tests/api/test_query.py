"""GET /api/images, /api/images/{id}, /classes, /regions, /api/query/defects; DELETE."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from app.utils.version import installed_version
from tests.support import AgentServer, db_rows


@pytest.fixture(scope="module")
def uploaded(agent: AgentServer, deeppcb: list[Path]) -> list[dict[str, object]]:
    """Four DeepPCB images inspected through the agent."""
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        answers = []
        for path in deeppcb[20:24]:
            response = c.post("/api/upload", files={"image": (path.name, path.read_bytes())})
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return answers


def test_images_are_listed_newest_first_with_counts(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    listed = client.get("/api/images", params={"limit": 2}).json()
    assert listed["total"] == 4
    assert listed["limit"] == 2
    assert len(listed["images"]) == 2
    newest = listed["images"][0]
    assert newest["img_unique_id"] == uploaded[-1]["img_unique_id"]
    assert newest["defect_classes"] == uploaded[-1]["defect_classes"]
    assert newest["thumbnail_url"].endswith("/thumbnail")
    page2 = client.get("/api/images", params={"limit": 2, "page": 2}).json()
    ids = [i["img_unique_id"] for i in listed["images"] + page2["images"]]
    assert ids == [u["img_unique_id"] for u in reversed(uploaded)]


def test_images_filter_by_class_date_and_defect_count(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    some_class = next(name for u in uploaded for name in u["defect_classes"])  # type: ignore[attr-defined]
    expected = {u["img_unique_id"] for u in uploaded if some_class in u["defect_classes"]}  # type: ignore[operator]
    by_class = client.get("/api/images", params={"class_name": some_class}).json()
    assert {i["img_unique_id"] for i in by_class["images"]} == expected
    today = str(uploaded[0]["timestamp"])[:10]
    assert (
        client.get("/api/images", params={"start_date": today, "end_date": today}).json()["total"]
        == 4
    )
    assert client.get("/api/images", params={"end_date": "2000-01-01"}).json()["total"] == 0
    most = max(int(u["total_defects"]) for u in uploaded)  # type: ignore[call-overload]
    many = client.get("/api/images", params={"min_defects": most}).json()
    assert many["total"] == sum(1 for u in uploaded if u["total_defects"] == most)


def test_images_search_by_file_name_or_id_prefix(
    client: httpx2.Client, uploaded: list[dict[str, object]], deeppcb: list[Path]
) -> None:
    """`q` finds an image by the start of its original file name (any case) or its id."""
    target = uploaded[1]
    name = deeppcb[21].name
    by_name = client.get("/api/images", params={"q": name[:6].upper()}).json()
    assert target["img_unique_id"] in {i["img_unique_id"] for i in by_name["images"]}
    prefix = name[:6].lower()
    assert all(i["original_filename"].lower().startswith(prefix) for i in by_name["images"])
    by_id = client.get("/api/images", params={"q": str(target["img_unique_id"]).lower()}).json()
    assert [i["img_unique_id"] for i in by_id["images"]] == [target["img_unique_id"]]
    # LIKE wildcards are matched literally: `%` finds nothing, and so does a name's middle.
    assert client.get("/api/images", params={"q": "%"}).json()["total"] == 0
    # `_` too: as a wildcard, name[:2] + "_" would find the target (no name has `_` there).
    assert client.get("/api/images", params={"q": name[:2] + "_"}).json()["total"] == 0
    assert client.get("/api/images", params={"q": name[3:]}).json()["total"] == 0
    # The search applies to the failed / pending lists too (none here).
    assert client.get("/api/images", params={"q": name, "status": "failed"}).json()["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"page": 0},
        {"start_date": "yesterday"},
        {"min_defects": -1},
        {"q": "x" * 101},
        {"q": "a\tb"},
    ],
)
def test_bad_query_parameters_are_422_with_a_message(
    client: httpx2.Client, params: dict[str, object]
) -> None:
    response = client.get("/api/images", params=params)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert next(iter(params)) in response.json()["detail"]


def test_image_detail_classes_and_regions_agree_with_the_upload(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    answer = max(uploaded, key=lambda u: u["total_defects"])  # type: ignore[arg-type,return-value]
    img_id = answer["img_unique_id"]
    detail = client.get(f"/api/images/{img_id}").json()
    assert detail["defect_classes"] == answer["defect_classes"]
    assert detail["images"] == answer["images"]
    classes = client.get(f"/api/images/{img_id}/classes").json()
    assert {c["class_name"]: c["total_regions"] for c in classes} == answer["defect_classes"]
    regions = client.get(f"/api/images/{img_id}/regions").json()
    assert regions["total_regions"] == answer["total_defects"]
    sent = answer["result"]["classes"]  # type: ignore[index]
    for group in regions["classes"]:
        original = sent[group["class_name"]]["regions"]
        assert len(group["regions"]) == group["total_regions"] == len(original)
        first, expected = group["regions"][0], original[0]
        assert first["centroid"] == expected["centroid"]
        assert first["bounding_box"] == expected["bounding_box"]
        assert first["circularity"] == expected["circularity"]
        assert sum(r["area_pixels"] for r in group["regions"]) == group["total_area_pixels"]


def test_defect_query_filters_by_class_and_area(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    everything = client.get("/api/query/defects", params={"limit": 100}).json()
    assert everything["total"] == sum(int(u["total_defects"]) for u in uploaded)  # type: ignore[call-overload]
    areas = sorted(r["area_pixels"] for r in everything["regions"])
    middle = areas[len(areas) // 2]
    big = client.get("/api/query/defects", params={"min_area": middle, "limit": 100}).json()
    assert big["total"] == sum(1 for a in areas if a >= middle)
    assert all(r["area_pixels"] >= middle for r in big["regions"])
    some_class = everything["regions"][0]["class_name"]
    one = client.get("/api/query/defects", params={"class_name": some_class}).json()
    assert one["total"] > 0
    assert {r["class_name"] for r in one["regions"]} == {some_class}


def test_unknown_ids_are_404_with_a_message(client: httpx2.Client) -> None:
    for path in ("", "/classes", "/regions"):
        response = client.get(f"/api/images/20990101_000000_NOPE00{path}")
        assert response.status_code == 404
        body = response.json()
        assert body == {
            "error": "image_not_found",
            "detail": "no inspection result with id 20990101_000000_NOPE00",
            "request_id": response.headers["x-request-id"],
        }


def test_delete_removes_rows_by_cascade_and_files(
    client: httpx2.Client, agent: AgentServer, uploaded: list[dict[str, object]]
) -> None:
    img_id = str(uploaded[0]["img_unique_id"])
    detail = client.get(f"/api/images/{img_id}").json()
    assert client.get(f"/api/images/{img_id}/thumbnail").status_code == 200
    data_dir = agent.settings.resolved_data_dir
    files = [data_dir / detail[k] for k in ("input_image_path", "result_image_1_path")]
    assert all(f.is_file() for f in files)

    assert client.delete(f"/api/images/{img_id}").status_code == 204
    db = agent.settings.database_url or ""
    for table in ("images", "classes", "regions", "inspections"):
        assert db_rows(db, f"SELECT count(*) FROM {table} WHERE img_unique_id = %s", img_id) == [
            (0,)
        ]
    assert not any(f.exists() for f in files)
    assert not list(data_dir.rglob(f"*{img_id}*"))
    assert client.delete(f"/api/images/{img_id}").status_code == 404


def test_defect_query_takes_the_prds_date_range(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    today = str(uploaded[0]["timestamp"])[:10]
    everything = client.get("/query/defects", params={"limit": 1}).json()["total"]
    for date_range in (f"{today}..{today}", f"{today}..", f"..{today}", "2000-01-01..2099-12-31"):
        answer = client.get("/query/defects", params={"date_range": date_range, "limit": 1})
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == everything, date_range
    agreeing = {"date_range": f"{today}..{today}", "start_date": today, "end_date": today}
    assert client.get("/query/defects", params=agreeing).json()["total"] == everything
    old = client.get("/query/defects", params={"date_range": "2000-01-01..2000-12-31"}).json()
    assert old["total"] == 0
    listed = client.get("/images", params={"date_range": f"{today}..{today}"}).json()
    assert listed["total"] == client.get("/images").json()["total"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"date_range": "2026-02-24"}, "YYYY-MM-DD..YYYY-MM-DD"),
        ({"date_range": "2026-02-24...2026-02-25"}, "YYYY-MM-DD..YYYY-MM-DD"),
        ({"date_range": ".."}, "YYYY-MM-DD..YYYY-MM-DD"),
        ({"date_range": "2026-02-30..2026-03-01"}, "impossible date"),
        ({"date_range": "2026-02-25..2026-02-24"}, "after it ends"),
        ({"date_range": "2026-02-24..2026-02-25", "start_date": "2026-02-23"}, "start_date"),
        ({"date_range": "2026-02-24..", "end_date": "2026-02-25"}, "end_date"),
    ],
)
def test_bad_or_conflicting_date_range_is_422_saying_why(
    client: httpx2.Client, params: dict[str, str], message: str
) -> None:
    for path in ("/query/defects", "/api/images"):
        response = client.get(path, params=params)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "invalid_request"
        assert "date_range" in body["detail"]
        assert message in body["detail"]
        assert body["errors"][0]["loc"] == ["query", "date_range"]


def test_class_names_match_in_any_letter_case(
    client: httpx2.Client, uploaded: list[dict[str, object]]
) -> None:
    some_class = next(name for u in uploaded for name in u["defect_classes"])  # type: ignore[attr-defined]
    for variant in (
        some_class.upper(),
        some_class.title(),
        f"{some_class[:1].upper()}{some_class[1:]}",
    ):
        expected = client.get("/images", params={"class_name": some_class}).json()
        got = client.get("/images", params={"class_name": variant}).json()
        assert got["total"] == expected["total"] > 0
        defects = client.get("/query/defects", params={"class_name": variant}).json()
        assert defects["total"] > 0
        assert {r["class_name"] for r in defects["regions"]} == {some_class}
        summary = client.get("/api/dashboard/summary").json()
        day = client.get("/api/dashboard/defects-per-day", params={"class_name": variant}).json()
        regions = next(c["regions"] for c in summary["classes"] if c["class_name"] == some_class)
        assert sum(d["by_class"].get(some_class, 0) for d in day["days"]) == regions
        heat = client.get("/api/dashboard/heatmap", params={"class_name": variant}).json()
        assert heat["total_regions"] == regions


def test_image_answer_names_its_model_and_the_list_filters_by_model_version(
    client: httpx2.Client, agent: AgentServer, uploaded: list[dict[str, object]]
) -> None:
    listed = client.get("/api/images").json()
    assert listed["total"] >= 1
    detail = client.get(f"/api/images/{listed['images'][0]['img_unique_id']}").json()
    provenance = detail["provenance"]
    # The reference service reports these (segformer_service/inspection.py).
    assert provenance["model_name"] == "reference-classical"
    assert re.fullmatch(r".+\+[0-9a-f]{12}", provenance["model_version"])
    assert provenance["agent_version"] == installed_version()
    assert provenance["model_service_url"].startswith("http://127.0.0.1:")
    stored = db_rows(
        str(agent.settings.database_url),
        "SELECT DISTINCT model_name, model_version FROM inspections WHERE status = 'succeeded'",
    )
    assert stored == [("reference-classical", provenance["model_version"])]
    same = client.get("/api/images", params={"model_version": provenance["model_version"]})
    assert same.json()["total"] == listed["total"]
    other = client.get("/api/images", params={"model_version": "some-other-model 9"})
    assert other.json()["total"] == 0
    bad = client.get("/api/images", params={"model_version": "a\tb"})
    assert bad.status_code == 422
    # The dashboard compares model versions the same way.
    everything = client.get("/api/dashboard/summary").json()
    this_model = client.get(
        "/api/dashboard/summary", params={"model_version": provenance["model_version"]}
    ).json()
    assert this_model["total_defects"] == everything["total_defects"]
    assert this_model["total_images"] == listed["total"]
    none = client.get("/api/dashboard/summary", params={"model_version": "other 9"}).json()
    assert (none["total_images"], none["total_defects"]) == (0, 0)
    for path in ("/api/dashboard/defects-per-day", "/api/dashboard/heatmap"):
        other_model = client.get(path, params={"model_version": "other 9"})
        assert other_model.status_code == 200, other_model.text
