"""Export routes: defect regions as CSV and as a COCO instance-segmentation file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from app.api.deps import RuntimeDep
from app.api.params import DefectFiltersDep
from app.api.routing import is_head_request
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import VALIDATION_ERROR_RESPONSE
from app.services.history.coco import coco_json
from app.services.history.regions_csv import REGION_CSV_COLUMNS, regions_csv

router = APIRouter(
    prefix="/export",
    tags=["Export"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


def _stream(
    request: Request, body: AsyncIterator[bytes], media_type: str, filename: str
) -> Response:
    """A streamed attachment; HEAD gets the headers only (nothing is read)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if is_head_request(request.scope):
        return Response(media_type=media_type, headers=headers)
    return StreamingResponse(body, media_type=media_type, headers=headers)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


@router.get(
    "/regions.csv",
    response_class=StreamingResponse,
    summary="Export defect regions as CSV",
    responses={
        200: {
            "description": "One line per region, streamed.",
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": ",".join(REGION_CSV_COLUMNS) + "\n",
                }
            },
        }
    },
)
async def export_regions_csv(
    request: Request, runtime: RuntimeDep, filters: DefectFiltersDep
) -> Response:
    """Every region matching the filters of `/api/query/defects` (class, dates, area,
    image, batch) with its image (id, original file name, timestamp, batch, size) and
    class, and its geometry in pixels. Streamed (constant memory however many rows);
    cells that a spreadsheet would run as a formula start with `'`. The `verdict`
    (`real`, `false_call`, `unsure`) and `disposition` (`pass`, `repair`, `scrap`) columns
    are the review's, empty while the region or image is not reviewed."""
    body = regions_csv(runtime.sessions, filters)
    return _stream(request, body, "text/csv; charset=utf-8", f"regions_{_stamp()}.csv")


@router.get(
    "/coco.json",
    response_class=StreamingResponse,
    summary="Export images and defect regions as COCO instance segmentation",
    responses={
        200: {
            "description": "A COCO file (images, categories, annotations), streamed.",
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "example": {
                        "info": {"description": "AOI Inference Agent defect regions"},
                        "licenses": [],
                        "categories": [{"id": 1, "name": "short", "supercategory": "defect"}],
                        "images": [
                            {
                                "id": 1,
                                "file_name": "20260225_103045_ABC123/input.jpg",
                                "width": 640,
                                "height": 640,
                            }
                        ],
                        "annotations": [
                            {
                                "id": 1,
                                "image_id": 1,
                                "category_id": 1,
                                "bbox": [10, 20, 7, 5],
                                "area": 14,
                                "iscrowd": 0,
                                "segmentation": {"size": [640, 640], "counts": "..."},
                            }
                        ],
                    },
                }
            },
        }
    },
)
async def export_coco(request: Request, runtime: RuntimeDep, filters: DefectFiltersDep) -> Response:
    """Usually `?batch_id=...`; takes every filter of `/api/query/defects`. `images`: the
    inspected images matching the image filters (dates, batch, image id), defect-free ones
    included; `annotations`: their regions matching all filters, each with `bbox`, `area`
    and `segmentation` as RLE of the region's pixels in the stored mask; `file_name` is
    the input's path inside the batch ZIP (`{img_unique_id}/input.jpg`)."""
    body = coco_json(runtime.sessions, runtime.storage, filters, runtime.client.decode_limiter)
    return _stream(request, body, "application/json", f"coco_{_stamp()}.json")
