"""The golden-board library and each board's golden crop (app/api/golden.py), through the
real agent, the real reference model service and real DeepPCB boards."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image as PILImage

from app.services.model_service.reference import ReferenceService, start_reference_service
from tests.conftest import agent_settings
from tests.support import (
    AgentServer,
    S3Emulator,
    create_api_key,
    create_database,
    db_rows,
    drop_database,
    local_files,
    make_image,
    serve_agent,
    template_of,
    wait_until,
)

# The offset the test gives its golden board: its pixel (x, y) is at (x + 7, y - 4) in
# the inspected board.
DX, DY = 7, -4


def grey(data: bytes) -> NDArray[np.uint8]:
    """An image file's bytes as a grey `uint8` array."""
    with PILImage.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)


def png(pixels: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def shifted(board: NDArray[np.uint8], dx: int, dy: int) -> NDArray[np.uint8]:
    """A golden board whose pixel (x, y) is the board's (x + dx, y + dy); white where the
    board has no pixel."""
    h, w = board.shape
    out = np.full_like(board, 255)
    y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
    out[y0:y1, x0:x1] = board[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


def expected_crop(
    golden: NDArray[np.uint8], x: int, y: int, width: int, height: int, dx: int, dy: int
) -> NDArray[np.uint8]:
    """The golden pixels under an inspected box (golden = inspected - offset), black outside."""
    padded = np.pad(golden, 4096)
    gx, gy = x - dx + 4096, y - dy + 4096
    return padded[gy : gy + height, gx : gx + width]


def put_golden(
    client: httpx2.Client, golden_id: str, data: bytes, name: str, **form: str
) -> httpx2.Response:
    return client.put(f"/api/golden/{golden_id}", files={"image": (name, data)}, params=form)


def upload(client: httpx2.Client, name: str, data: bytes) -> str:
    answer = client.post("/api/upload", files={"image": (name, data)})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["img_unique_id"])


@pytest.fixture(scope="module")
def library(agent: AgentServer, deeppcb: list[Path]) -> dict[str, Any]:
    """A library of three golden boards: one board shifted by (DX, DY) and the DeepPCB
    templates of two other boards; and that board inspected through the agent."""
    board_path = deeppcb[100]
    board = grey(board_path.read_bytes())
    golden = shifted(board, DX, DY)
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        for other in (deeppcb[10], deeppcb[50]):
            answer = put_golden(c, f"t-{other.stem}", template_of(other), other.name)
            assert answer.status_code == 201, answer.text
        answer = put_golden(c, "shifted", png(golden), "shifted.png", product="demo", side="top")
        assert answer.status_code == 201, answer.text
        img_id = upload(c, board_path.name, board_path.read_bytes())
    return {"img_id": img_id, "golden": golden, "board": board}


def test_the_board_finds_its_golden_board_and_offset(
    client: httpx2.Client, library: dict[str, Any], agent: AgentServer
) -> None:
    answer = client.get(f"/api/images/{library['img_id']}/golden")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["golden_id"] == "shifted"
    assert (found["product"], found["side"]) == ("demo", "top")
    assert found["registration"] == "agent"
    assert found["offset"]["dx"] == pytest.approx(DX, abs=0.5)
    assert found["offset"]["dy"] == pytest.approx(DY, abs=0.5)
    assert found["score"] > 0.9
    # The link opens the golden image as it was added.
    image = httpx2.get(found["image_url"], timeout=30)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert np.array_equal(grey(image.content), library["golden"])
    # Registered once, kept in the database.
    rows = db_rows(
        agent.settings.database_url or "",
        "SELECT golden_id, method, dx, dy FROM golden_registrations WHERE img_unique_id = %s",
        library["img_id"],
    )
    assert rows == [("shifted", "agent", found["offset"]["dx"], found["offset"]["dy"])]


def test_a_stored_board_is_registered_before_anyone_asks(
    agent: AgentServer, library: dict[str, Any], deeppcb: list[Path]
) -> None:
    """GOLDEN_REGISTER_ON_STORE (on by default): the registration is made in the
    background once the inspection is stored, not on the first `GET …/golden`."""
    board_path = deeppcb[100]
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        answer = c.post(
            "/api/upload",
            params={"skip_duplicates": "false"},
            files={"image": ("again-" + board_path.name, board_path.read_bytes())},
        )
    assert answer.status_code == 200, answer.text
    img_id = answer.json()["img_unique_id"]
    query = "SELECT golden_id, method FROM golden_registrations WHERE img_unique_id = %s"
    database = agent.settings.database_url or ""
    wait_until(lambda: db_rows(database, query, img_id), timeout_s=30)
    assert db_rows(database, query, img_id) == [("shifted", "agent")]


@pytest.mark.parametrize(
    "box",
    [
        (200, 150, 48, 32),  # inside the golden board
        (0, 0, 40, 30),  # its top-left corner: golden pixels left of x = 7 do not exist
        (600, 610, 40, 30),  # the bottom-right corner: beyond the golden board, black
    ],
)
def test_crop_is_the_golden_slice_under_the_box(
    client: httpx2.Client, library: dict[str, Any], box: tuple[int, int, int, int]
) -> None:
    x, y, width, height = box
    answer = client.get(
        f"/api/images/{library['img_id']}/golden/crop",
        params={"x": x, "y": y, "width": width, "height": height},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    crop = grey(answer.content)
    assert crop.shape == (height, width)
    assert np.array_equal(crop, expected_crop(library["golden"], x, y, width, height, DX, DY))
    if (x, y) != (600, 610):
        # The same spot of the board: the test image there is the golden crop.
        test = library["board"][y : y + height, x : x + width]
        inside = crop > 0
        assert np.mean(np.abs(test[inside].astype(int) - crop[inside].astype(int))) < 2


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"x": 0, "y": 0, "width": 0, "height": 10}, "width"),
        ({"x": 0, "y": 0, "width": 10, "height": -3}, "height"),
        ({"x": 0, "y": 0, "width": 10**30, "height": 10}, "width"),
        ({"x": 0, "y": 0, "width": 5000, "height": 10}, "width"),
        ({"x": -1, "y": 0, "width": 10, "height": 10}, "x"),
        ({"x": "1\x00", "y": 0, "width": 10, "height": 10}, "x"),
        ({"x": 630, "y": 0, "width": 20, "height": 10}, "not within"),
        ({"x": 0, "y": 639, "width": 20, "height": 2}, "not within"),
        ({"y": 0, "width": 20, "height": 2}, "x"),
    ],
)
def test_bad_crop_boxes_are_refused_with_422(
    client: httpx2.Client, library: dict[str, Any], params: dict[str, Any], problem: str
) -> None:
    answer = client.get(f"/api/images/{library['img_id']}/golden/crop", params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert problem in body["detail"]
    assert body["errors"]


def test_a_board_without_golden_board_answers_404(
    client: httpx2.Client, library: Any, agent: AgentServer
) -> None:
    img_id = upload(client, "odd.png", make_image("PNG", (64, 48)))
    for path in (f"/api/images/{img_id}/golden", f"/api/images/{img_id}/golden/crop"):
        answer = client.get(path, params={"x": 0, "y": 0, "width": 8, "height": 8})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "golden_not_found"
    # "None matched" is kept too (the search is not repeated), despite the 404.
    assert db_rows(
        agent.settings.database_url or "",
        "SELECT golden_id, method FROM golden_registrations WHERE img_unique_id = %s",
        img_id,
    ) == [(None, "none")]
    unknown = client.get("/api/images/20990101_000000_NOPE00/golden")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "image_not_found"


def test_replacing_and_deleting_a_golden_board(
    client: httpx2.Client, library: dict[str, Any], deeppcb: list[Path], agent: AgentServer
) -> None:
    listed = client.get("/api/golden").json()
    assert [g["golden_id"] for g in listed] == [
        "shifted",
        f"t-{deeppcb[10].stem}",
        f"t-{deeppcb[50].stem}",
    ]
    assert {g["source"] for g in listed} == {"api"}
    # Another board under a new id, then the old golden gone: the board finds the new one,
    # registered again (offset about zero: the same board, unshifted).
    added = put_golden(client, "plain", png(library["board"]), "plain.png")
    assert added.status_code == 201
    assert added.json()["image_width"] == 640
    assert client.delete("/api/golden/shifted").status_code == 200
    assert client.delete("/api/golden/shifted").json()["error"] == "golden_not_found"
    found = client.get(f"/api/images/{library['img_id']}/golden").json()
    assert found["golden_id"] == "plain"
    assert abs(found["offset"]["dx"]) < 0.5
    assert abs(found["offset"]["dy"]) < 0.5
    # Replacing it (200, not 201) forgets the registration: shifted again, found again.
    replaced = put_golden(client, "plain", png(library["golden"]), "plain.png")
    assert replaced.status_code == 200
    # One file per golden image: the replaced one is gone from the store.
    files = local_files(agent.settings.resolved_data_dir / "golden" / "plain")
    assert len(files) == 1
    assert np.array_equal(grey(files[0].read_bytes()), library["golden"])
    found = client.get(f"/api/images/{library['img_id']}/golden").json()
    assert found["offset"]["dx"] == pytest.approx(DX, abs=0.5)
    assert found["offset"]["dy"] == pytest.approx(DY, abs=0.5)


@pytest.mark.parametrize(
    ("golden_id", "data", "status", "error"),
    [
        ("text", b"hello, not an image", 415, "unsupported_media_type"),
        ("empty", b"", 422, "invalid_image"),
        ("cut", make_image("PNG", (64, 48))[:-20], 422, "invalid_image"),
        ("corrupt", make_image("PNG", (64, 48))[:40] + b"\x00" * 60, 422, "invalid_image"),
        ("bad\x00id", make_image("PNG"), 422, "invalid_request"),
        ("-starts-with-dash", make_image("PNG"), 422, "invalid_request"),
        ("x" * 129, make_image("PNG"), 422, "invalid_request"),
    ],
)
def test_bad_golden_images_and_ids_are_refused(
    client: httpx2.Client, golden_id: str, data: bytes, status: int, error: str
) -> None:
    answer = put_golden(client, golden_id.replace("\x00", "%00"), data, "g.png")
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert golden_id not in {g["golden_id"] for g in client.get("/api/golden").json()}


def test_file_names_are_the_last_part_of_the_clients_path(client: httpx2.Client) -> None:
    answer = put_golden(client, "pathname", make_image("PNG"), "C:\\line 3\\golden.png")
    assert answer.status_code == 201, answer.text
    assert answer.json()["file_name"] == "golden.png"
    assert client.delete("/api/golden/pathname").status_code == 200


def test_bad_multipart_requests_are_refused(client: httpx2.Client) -> None:
    # A raw NUL byte in the file name (httpx would escape it), as the upload refuses it.
    body = (
        b'--x\r\nContent-Disposition: form-data; name="image";'
        b' filename="gold\x00en.png"\r\nContent-Type: image/png\r\n\r\n'
        + make_image("PNG")
        + b"\r\n--x--\r\n"
    )
    answers = [
        client.put(
            "/api/golden/badreq",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        ),
        client.put("/api/golden/badreq", files={"other": ("g.png", make_image("PNG"))}),
        client.put("/api/golden/badreq", json={"image": "x"}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "bad_request"
    for params in ({"product": "a\x00b"}, {"side": "s" * 33}):
        answer = put_golden(client, "badreq", make_image("PNG"), "g.png", **params)
        assert answer.status_code == 422, answer.text
    assert client.get("/api/golden/badreq/image").status_code == 404


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
    migrated_template: str,
    reference_service: ReferenceService,
) -> Iterator[AgentServer]:
    """The agent requiring API keys, on its own database."""
    url = create_database(postgres_server_url, template=migrated_template)
    settings = agent_settings(
        tmp_path_factory.mktemp("secured"), url, reference_service.url, auth_mode="required"
    )
    try:
        with serve_agent(settings) as server:
            yield server
    finally:
        drop_database(url)


def test_only_admins_change_the_library_and_readers_see_crops(
    secured: AgentServer, deeppcb: list[Path]
) -> None:
    url = secured.settings.database_url or ""
    read = {"X-API-Key": create_api_key(url, "golden-reader", "read")}
    write = {"X-API-Key": create_api_key(url, "golden-writer", "write")}
    admin = {"X-API-Key": create_api_key(url, "golden-admin", "admin")}
    board = deeppcb[120]
    template = template_of(board)
    with httpx2.Client(base_url=secured.url, timeout=60) as c:
        for headers in (read, write):
            refused = c.put(
                "/api/golden/secure", files={"image": (board.name, template)}, headers=headers
            )
            assert refused.status_code == 403
            assert refused.json()["error"] == "insufficient_scope"
            assert c.get("/api/golden", headers=headers).status_code == 403
            assert c.delete("/api/golden/secure", headers=headers).status_code == 403
        added = c.put("/api/golden/secure", files={"image": (board.name, template)}, headers=admin)
        assert added.status_code == 201, added.text
        img_id = c.post(
            "/api/upload", files={"image": (board.name, board.read_bytes())}, headers=write
        ).json()["img_unique_id"]
        assert c.get(f"/api/images/{img_id}/golden").status_code == 401
        found = c.get(f"/api/images/{img_id}/golden", headers=read)
        assert found.status_code == 200, found.text
        assert found.json()["golden_id"] == "secure"
        crop = c.get(f"/api/images/{img_id}/golden/crop?x=10&y=10&width=20&height=20", headers=read)
        assert crop.status_code == 200
        # The golden image's link is signed: it opens without a key, and not without it.
        link = found.json()["image_url"]
        assert "signature=" in link
        assert httpx2.get(link).content == template
        assert httpx2.get(link.split("?")[0]).status_code == 401


@pytest.fixture(scope="module")
def template_agent(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
    migrated_template: str,
    deeppcb: list[Path],
) -> Iterator[tuple[AgentServer, list[Path]]]:
    """The agent with GOLDEN_DIR = the golden images of the reference service's template
    engine (three DeepPCB templates), on its own database."""
    folder = tmp_path_factory.mktemp("goldens")
    boards = [deeppcb[5], deeppcb[70], deeppcb[140]]
    for board in boards:
        (folder / board.name).write_bytes(template_of(board))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFERENCE_SERVICE_ENGINE", "template")
        patch.setenv("REFERENCE_SERVICE_TEMPLATES_DIR", str(folder))
        service = start_reference_service(tmp_path_factory.mktemp("tref") / "service.log")
    url = create_database(postgres_server_url, template=migrated_template)
    settings = agent_settings(tmp_path_factory.mktemp("tdata"), url, service.url, golden_dir=folder)
    try:
        with serve_agent(settings) as server:
            yield server, boards
    finally:
        service.stop()
        drop_database(url)


def test_the_model_services_template_and_offset_are_used(
    template_agent: tuple[AgentServer, list[Path]],
) -> None:
    agent, boards = template_agent
    with httpx2.Client(base_url=agent.url, timeout=60) as c:
        listed = c.get("/api/golden").json()
        assert [(g["golden_id"], g["source"]) for g in listed] == [
            (b.stem, "folder") for b in sorted(boards)
        ]
        for board in boards:
            img_id = upload(c, board.name, board.read_bytes())
            analysis = c.get(f"/api/download/json/{img_id}").json()
            assert analysis["engine"] == "template"
            provenance = analysis["provenance"]
            assert provenance["template"] == board.name
            found = c.get(f"/api/images/{img_id}/golden").json()
            assert found["golden_id"] == board.stem
            assert found["registration"] == "model"
            offset = provenance["registration_offset"]
            assert found["offset"] == {"dx": offset["x"], "dy": offset["y"]}
            assert found["score"] == provenance["match_score"]
            crop = c.get(
                f"/api/images/{img_id}/golden/crop",
                params={"x": 300, "y": 300, "width": 32, "height": 32},
            )
            template = grey(template_of(board))
            dx, dy = round(offset["x"]), round(offset["y"])
            assert np.array_equal(
                grey(crop.content), expected_crop(template, 300, 300, 32, 32, dx, dy)
            )


def test_golden_images_live_in_an_s3_store_too(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
    migrated_template: str,
    reference_service: ReferenceService,
    s3_emulator: S3Emulator,
    deeppcb: list[Path],
) -> None:
    """STORAGE_URL=s3://… (moto's S3 emulator): the golden image is an object under
    `golden/`, read back for registration, crops and its link; replacing it removes the
    old object."""
    bucket = s3_emulator.new_bucket()
    url = create_database(postgres_server_url, template=migrated_template)
    settings = agent_settings(
        tmp_path_factory.mktemp("s3data"),
        url,
        reference_service.url,
        storage_url=f"s3://{bucket}/plant",
        s3_endpoint_url=s3_emulator.url,
    )
    board = deeppcb[90]
    pixels = grey(board.read_bytes())
    golden = shifted(pixels, DX, DY)
    try:
        with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as c:
            assert put_golden(c, "s3-board", png(pixels), "s3-board.png").status_code == 201
            first = s3_emulator.keys(bucket, "plant/golden/")
            assert len(first) == 1
            assert put_golden(c, "s3-board", png(golden), "s3-board.png").status_code == 200
            keys = s3_emulator.keys(bucket, "plant/golden/")
            assert len(keys) == 1
            assert keys != first
            assert np.array_equal(grey(s3_emulator.read(bucket, keys[0])), golden)
            img_id = upload(c, board.name, board.read_bytes())
            found = c.get(f"/api/images/{img_id}/golden").json()
            assert found["offset"]["dx"] == pytest.approx(DX, abs=0.5)
            assert found["offset"]["dy"] == pytest.approx(DY, abs=0.5)
            crop = c.get(
                f"/api/images/{img_id}/golden/crop",
                params={"x": 100, "y": 100, "width": 40, "height": 40},
            )
            assert np.array_equal(
                grey(crop.content), expected_crop(golden, 100, 100, 40, 40, DX, DY)
            )
            assert np.array_equal(grey(httpx2.get(found["image_url"]).content), golden)
    finally:
        drop_database(url)
