"""Board context on uploads (form fields, batch manifest), stored in `inspection_contexts`,
answered in the image's JSON; and the board timeline `GET /api/boards/{board_serial}`.

Real agent, PostgreSQL and reference model service; boards from samples/deeppcb.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from tests.support import AgentServer, db_rows, wait_until

CONTEXT = {
    "board_serial": "SN-BOARD-0001",
    "panel_id": "P-7781",
    "panel_position": "3",
    "product": "CTRL-A",
    "recipe_revision": "r12",
    "line": "L3",
    "station": "AOI-2",
    "side": "top",
    "lot": "WO-1207",
    "lane": "2",
}


def kept_inputs(agent: AgentServer) -> list[Path]:
    """Every input kept under uploads/ (temporary folders excluded)."""
    root = agent.settings.resolved_data_dir / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def context_row(agent: AgentServer, img_unique_id: str) -> tuple[object, ...] | None:
    db = agent.settings.database_url
    assert db is not None
    rows = db_rows(
        db,
        "SELECT board_serial, panel_id, panel_position, product, recipe_revision, line,"
        " station, side, lot, lane FROM inspection_contexts WHERE img_unique_id = %s",
        img_unique_id,
    )
    return rows[0] if rows else None


def test_single_upload_with_context_stores_it_and_answers_it(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    image = deeppcb[0]
    response = client.post(
        "/api/upload", files={"image": (image.name, image.read_bytes())}, data=CONTEXT
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = {**CONTEXT, "panel_position": 3, "lane": 2}
    assert body["context"] == expected
    img_id = body["img_unique_id"]
    assert context_row(agent, img_id) == tuple(expected.values())
    detail = client.get(f"/api/images/{img_id}").json()
    assert detail["context"] == expected


def test_upload_without_context_has_none_and_no_row(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    image = deeppcb[1]
    response = client.post(
        "/api/upload", files={"image": (image.name, image.read_bytes())}, data={"line": "  "}
    )
    assert response.status_code == 200, response.text
    img_id = response.json()["img_unique_id"]
    assert response.json()["context"] is None
    assert context_row(agent, img_id) is None
    assert client.get(f"/api/images/{img_id}").json()["context"] is None


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("board_serial", "SN\x00123", "printable"),
        ("product", "A\nB", "printable"),
        ("line", "x" * 10_000, "at most 64"),
        ("panel_position", "1" + "0" * 30, "less than or equal"),
        ("panel_position", "-1", "greater than or equal"),
        ("panel_position", "three", "integer"),
        ("lane", "0", "greater than or equal"),
        ("lane", "100", "less than or equal"),
        ("side", "left", "'top' or 'bottom'"),
    ],
)
def test_context_out_of_bounds_is_422_and_keeps_nothing(
    client: httpx2.Client,
    agent: AgentServer,
    deeppcb: list[Path],
    field: str,
    value: str,
    problem: str,
) -> None:
    image = deeppcb[2]
    before = kept_inputs(agent)
    response = client.post(
        "/api/upload", files={"image": (image.name, image.read_bytes())}, data={field: value}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["errors"][0]["loc"] == ["body", field]
    assert problem in body["detail"]
    assert "\x00" not in response.text
    assert "0" * 30 not in response.text
    assert kept_inputs(agent) == before


def test_batch_manifest_per_file_reaches_each_queued_image(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    a, b, c = deeppcb[10], deeppcb[11], deeppcb[12]
    manifest = {
        a.name: {"board_serial": "SN-A", "side": "top", "product": "CTRL-A"},
        b.name: {"board_serial": "SN-B", "side": "bottom", "lot": "WO-9"},
    }
    response = client.post(
        "/api/upload/batch",
        files=[("images", (p.name, p.read_bytes())) for p in (a, b, c)],
        data={"manifest": json.dumps(manifest)},
    )
    assert response.status_code == 202, response.text
    ids = {f["filename"]: f["img_unique_id"] for f in response.json()["accepted"]}
    status_url = response.json()["status_url"]
    final = wait_until(lambda: (s := client.get(status_url).json())["done"] and s)
    assert final["succeeded"] == 3
    detail_a = client.get(f"/api/images/{ids[a.name]}").json()
    assert detail_a["status"] == "succeeded"
    assert detail_a["context"]["board_serial"] == "SN-A"
    assert detail_a["context"]["product"] == "CTRL-A"
    assert client.get(f"/api/images/{ids[b.name]}").json()["context"]["side"] == "bottom"
    assert client.get(f"/api/images/{ids[c.name]}").json()["context"] is None


def test_batch_manifest_one_context_for_all(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    files = deeppcb[13:15]
    response = client.post(
        "/api/upload/batch",
        files=[("images", (p.name, p.read_bytes())) for p in files],
        data={"manifest": json.dumps({"lot": "WO-ALL", "line": "L1"})},
    )
    assert response.status_code == 202, response.text
    for accepted in response.json()["accepted"]:
        row = context_row(agent, accepted["img_unique_id"])
        assert row is not None
        assert row[5] == "L1"
        assert row[8] == "WO-ALL"


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ('{"a.jpg": {"board_serial": "SN1"', "not JSON"),
        ('{"nosuchfile.jpg": {"board_serial": "SN1"}}', "not in the batch"),
        ("[" * 200_000, "not JSON"),  # a nesting bomb
        ('{"board_serial": "SN1", "colour": "red"}', "Extra inputs"),
        ('["SN1"]', "JSON object"),
        (json.dumps({"board_serial": "x" * 262_200}), "256 KiB"),
    ],
)
def test_bad_manifest_is_422_and_keeps_nothing(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path], manifest: str, problem: str
) -> None:
    files = deeppcb[15:17]
    before = kept_inputs(agent)
    response = client.post(
        "/api/upload/batch",
        files=[("images", (p.name, p.read_bytes())) for p in files],
        data={"manifest": manifest},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["loc"][:2] == ["body", "manifest"]
    assert problem in body["detail"]
    assert kept_inputs(agent) == before


def test_manifest_field_bigger_than_the_form_bound_is_400(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    image = deeppcb[17]
    response = client.post(
        "/api/upload/batch",
        files=[("images", (image.name, image.read_bytes()))],
        data={"manifest": "{" + " " * 300_000 + "}"},
    )
    assert response.status_code == 400, response.text
    assert "manifest" in response.json()["detail"]


def test_context_is_deleted_with_its_inspection(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    image = deeppcb[18]
    response = client.post(
        "/api/upload",
        files={"image": (image.name, image.read_bytes())},
        data={"board_serial": "SN-GONE"},
    )
    img_id = response.json()["img_unique_id"]
    assert context_row(agent, img_id) is not None
    assert client.delete(f"/api/images/{img_id}").status_code in (200, 204)
    assert context_row(agent, img_id) is None


WHO = {"X-Reviewer": "inspector-1"}


def test_board_timeline_first_pass_repair_and_reinspection(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    """A board fails its first pass (defects, disposition repair), is repaired and inspected
    again with every region a false call: the timeline shows both, first pass `fail`,
    latest `pass`, with regions, verdicts and the disposition."""
    serial = "SN-TIMELINE-1"
    ids = []
    for image in deeppcb[20:22]:
        response = client.post(
            "/api/upload",
            files={"image": (image.name, image.read_bytes())},
            data={"board_serial": serial, "product": "CTRL-A", "line": "L3"},
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["img_unique_id"])
    first, second = ids
    assert client.put(
        f"/api/images/{first}/disposition", json={"disposition": "repair"}, headers=WHO
    ).is_success
    regions = client.get(f"/api/images/{second}/regions").json()
    for group in regions["classes"]:
        for region in group["regions"]:
            verdict = client.put(
                f"/api/regions/{region['region_unique_id']}/verdict",
                json={"verdict": "false_call"},
                headers=WHO,
            )
            assert verdict.is_success, verdict.text

    timeline = client.get(f"/api/boards/{serial}")
    assert timeline.status_code == 200, timeline.text
    body = timeline.json()
    assert body["board_serial"] == serial
    assert [i["img_unique_id"] for i in body["inspections"]] == ids
    one, two = body["inspections"]
    assert (one["pass_number"], one["kind"], one["outcome"]) == (1, "first_pass", "fail")
    assert one["disposition"]["disposition"] == "repair"
    assert one["total_defects"] > 0
    assert one["regions"]["total_regions"] == one["total_defects"]
    assert (two["pass_number"], two["kind"], two["outcome"]) == (2, "reinspection", "pass")
    verdicts = {r["review"]["verdict"] for g in two["regions"]["classes"] for r in g["regions"]}
    assert verdicts == {"false_call"}
    assert two["context"]["product"] == "CTRL-A"
    assert two["viewer_url"].endswith(f"/results/{second}")
    assert body["first_pass"] == "fail"
    assert body["latest"] == "pass"


def test_unknown_board_is_404_and_a_bad_serial_422(client: httpx2.Client) -> None:
    response = client.get("/api/boards/SN-NEVER-SEEN")
    assert response.status_code == 404
    assert response.json()["error"] == "board_not_found"
    assert client.get("/api/boards/" + "x" * 65).status_code == 422


def test_context_filters_on_images_defects_and_exports(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    """Three boards of two products on two lines: each filter keeps exactly its boards,
    on the listing, the defect query and the CSV export alike."""
    contexts = [
        {
            "board_serial": "SN-F1",
            "product": "PROD-F",
            "line": "LF1",
            "side": "top",
            "lot": "LOT-F1",
        },
        {
            "board_serial": "SN-F2",
            "product": "PROD-F",
            "line": "LF2",
            "side": "bottom",
            "lot": "LOT-F1",
        },
        {
            "board_serial": "SN-F3",
            "product": "PROD-G",
            "line": "LF2",
            "side": "top",
            "lot": "LOT-F2",
        },
    ]
    ids = {}
    for image, context in zip(deeppcb[24:27], contexts, strict=True):
        response = client.post(
            "/api/upload", files={"image": (image.name, image.read_bytes())}, data=context
        )
        assert response.status_code == 200, response.text
        ids[context["board_serial"]] = response.json()["img_unique_id"]

    def listed(**params: str) -> set[str]:
        body = client.get("/api/images", params={**params, "limit": "100"}).json()
        return {i["img_unique_id"] for i in body["images"]}

    assert listed(product="PROD-F") == {ids["SN-F1"], ids["SN-F2"]}
    assert listed(line="LF2", side="top") == {ids["SN-F3"]}
    assert listed(lot="LOT-F1") == {ids["SN-F1"], ids["SN-F2"]}
    assert listed(board_serial="SN-F2") == {ids["SN-F2"]}
    assert listed(product="PROD-NONE") == set()
    assert client.get("/api/images", params={"product": "PROD-F"}).json()["total"] == 2

    defects = client.get("/api/query/defects", params={"line": "LF2", "limit": "100"}).json()
    assert {d["img_unique_id"] for d in defects["regions"]} == {ids["SN-F2"], ids["SN-F3"]}

    csv = client.get("/api/export/regions.csv", params={"board_serial": "SN-F1"})
    assert csv.status_code == 200, csv.text
    assert ids["SN-F1"] in csv.text
    assert ids["SN-F2"] not in csv.text
    assert ids["SN-F3"] not in csv.text


@pytest.mark.parametrize(
    "params",
    [{"side": "left"}, {"board_serial": "SN\x00"}, {"product": "x" * 65}, {"lot": ""}],
)
def test_bad_context_filters_are_422(client: httpx2.Client, params: dict[str, str]) -> None:
    for path in ("/api/images", "/api/query/defects", "/api/export/regions.csv"):
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"] == "invalid_request"


def test_board_yield_per_product_and_line(client: httpx2.Client, deeppcb: list[Path]) -> None:
    """Board A passes its first pass (disposition pass); board B fails it (defects, no
    verdict) and passes its re-inspection; board C fails and is not re-inspected."""

    def inspect(image: Path, serial: str, line: str) -> str:
        response = client.post(
            "/api/upload",
            files={"image": (image.name, image.read_bytes())},
            data={"board_serial": serial, "product": "PROD-Y", "line": line},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["img_unique_id"])

    def dispose(img_unique_id: str, disposition: str) -> None:
        response = client.put(
            f"/api/images/{img_unique_id}/disposition",
            json={"disposition": disposition},
            headers=WHO,
        )
        assert response.is_success, response.text

    dispose(inspect(deeppcb[27], "SN-Y-A", "LY1"), "pass")
    inspect(deeppcb[28], "SN-Y-B", "LY1")
    dispose(inspect(deeppcb[29], "SN-Y-B", "LY1"), "pass")
    inspect(deeppcb[31], "SN-Y-C", "LY2")

    response = client.get("/api/dashboard/board-yield", params={"product": "PROD-Y"})
    assert response.status_code == 200, response.text
    body = response.json()
    total = body["total"]
    assert (total["boards"], total["first_pass_passed"]) == (3, 1)
    assert total["first_pass_yield"] == pytest.approx(1 / 3)
    assert (total["reinspected_boards"], total["reinspection_passed"]) == (1, 1)
    assert total["reinspection_yield"] == 1.0
    assert set(body["by_product"]) == {"PROD-Y"}
    assert body["by_line"]["LY1"]["boards"] == 2
    assert body["by_line"]["LY1"]["first_pass_yield"] == 0.5
    assert body["by_line"]["LY2"]["first_pass_yield"] == 0.0
    assert body["by_line"]["LY2"]["reinspection_yield"] is None
    line2 = client.get("/api/dashboard/board-yield", params={"product": "PROD-Y", "line": "LY2"})
    assert line2.json()["total"]["boards"] == 1


def test_board_yield_refuses_a_long_range(client: httpx2.Client) -> None:
    response = client.get(
        "/api/dashboard/board-yield", params={"start_date": "2026-01-01", "end_date": "2026-12-01"}
    )
    assert response.status_code == 422
    assert "92 days" in response.json()["detail"]


DASHBOARD_CONTEXTS = [
    {"board_serial": "SN-D1", "product": "PROD-D", "line": "LD1", "side": "top", "lot": "LOT-D1"},
    {
        "board_serial": "SN-D2",
        "product": "PROD-D",
        "line": "LD2",
        "side": "bottom",
        "lot": "LOT-D1",
    },
    {"board_serial": "SN-D3", "product": "PROD-E", "line": "LD2", "side": "top", "lot": "LOT-D2"},
]


@pytest.mark.parametrize(
    ("params", "serials"),
    [
        ({"product": "PROD-D"}, {"SN-D1", "SN-D2"}),
        ({"line": "LD2", "side": "top"}, {"SN-D3"}),
        ({"lot": "LOT-D2"}, {"SN-D3"}),
        ({"board_serial": "SN-D2"}, {"SN-D2"}),
        ({"product": "PROD-NONE"}, set()),
    ],
)
def test_context_filters_on_every_dashboard_route(
    client: httpx2.Client,
    deeppcb: list[Path],
    params: dict[str, str],
    serials: set[str],
) -> None:
    """Three boards of two products on two lines, one disposition each: every dashboard
    route (summary, defects per day, heatmap, review figures, p- and u-chart) counts
    exactly the filtered boards, whatever else the database holds (the unfiltered
    figures come from the rollups, the filtered ones from the inspection tables)."""
    ids = {}
    for image, context in zip(deeppcb[33:36], DASHBOARD_CONTEXTS, strict=True):
        listed = client.get("/api/images", params={"board_serial": context["board_serial"]})
        found = listed.json()["images"]
        if found:  # uploaded by an earlier case of this test (same module agent)
            ids[context["board_serial"]] = found[0]["img_unique_id"]
            continue
        response = client.post(
            "/api/upload", files={"image": (image.name, image.read_bytes())}, data=context
        )
        assert response.status_code == 200, response.text
        img_unique_id = response.json()["img_unique_id"]
        ids[context["board_serial"]] = img_unique_id
        put = client.put(
            f"/api/images/{img_unique_id}/disposition",
            json={"disposition": "repair"},
            headers=WHO,
        )
        assert put.is_success, put.text
    wanted = {ids[s] for s in serials}
    regions = {
        i: len(
            client.get("/api/query/defects", params={"img_unique_id": i, "limit": "100"}).json()[
                "regions"
            ]
        )
        for i in wanted
    }
    expected_regions = sum(regions.values())
    expected_defective = sum(1 for n in regions.values() if n)

    summary = client.get("/api/dashboard/summary", params=params)
    assert summary.status_code == 200, summary.text
    assert summary.json()["total_images"] == len(wanted)
    assert summary.json()["total_defects"] == expected_regions
    assert summary.json()["images_with_defects"] == expected_defective

    days = client.get("/api/dashboard/defects-per-day", params=params).json()["days"]
    assert sum(d["images"] for d in days) == len(wanted)
    assert sum(d["defects"] for d in days) == expected_regions

    heatmap = client.get("/api/dashboard/heatmap", params={**params, "bins": "8"}).json()
    assert heatmap["total_regions"] == expected_regions
    odd = client.get("/api/dashboard/heatmap", params={**params, "bins": "5"}).json()
    assert odd["total_regions"] == expected_regions

    review = client.get("/api/dashboard/review", params=params).json()
    assert sum(review["dispositions"].values()) == len(wanted)
    assert review["total"]["images"] == expected_defective

    p_chart = client.get("/api/spc/p-chart", params=params)
    assert p_chart.status_code == 200, p_chart.text
    points = p_chart.json()["points"]
    assert sum(p["boards"] for p in points) == len(wanted)
    assert sum(p["count"] for p in points) == expected_defective
    u_chart = client.get("/api/spc/u-chart", params={**params, "class": "short"})
    assert u_chart.status_code == 200, u_chart.text
    assert sum(p["boards"] for p in u_chart.json()["points"]) == len(wanted)


DASHBOARD_ROUTES = (
    "/api/dashboard/summary",
    "/api/dashboard/defects-per-day",
    "/api/dashboard/heatmap",
    "/api/dashboard/review",
    "/api/dashboard/board-yield",
    "/api/spc/p-chart",
)


@pytest.mark.parametrize(
    "params",
    [{"side": "left"}, {"board_serial": "SN\x00"}, {"product": "x" * 65}, {"lot": ""}],
)
def test_bad_context_filters_on_dashboard_routes_are_422(
    client: httpx2.Client, params: dict[str, str]
) -> None:
    for path in DASHBOARD_ROUTES:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"] == "invalid_request"


def test_board_contexts_list_the_values_of_the_range(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    """The picker values: every product, line, side and lot sent in the range, sorted,
    once each; an inspection without context adds nothing."""
    for image, context in zip(
        deeppcb[36:39],
        [
            {"product": "PROD-V2", "line": "LV", "lot": "LOT-V"},
            {"product": "PROD-V1", "line": "LV", "side": "bottom"},
            {},
        ],
        strict=True,
    ):
        response = client.post(
            "/api/upload", files={"image": (image.name, image.read_bytes())}, data=context
        )
        assert response.status_code == 200, response.text
    body = client.get("/api/dashboard/board-contexts").json()
    assert {"PROD-V1", "PROD-V2"} <= set(body["product"])
    assert body["product"] == sorted(set(body["product"]))
    assert body["line"].count("LV") == 1
    assert "bottom" in body["side"]
    assert set(body["side"]) <= {"top", "bottom"}
    assert "LOT-V" in body["lot"]
    assert body["truncated"] is False
    past = client.get(
        "/api/dashboard/board-contexts", params={"date_range": "2020-01-01..2020-01-31"}
    )
    assert past.json()["product"] == []
    assert past.json()["end_date"] == "2020-01-31"
