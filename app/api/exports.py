"""Export routes: defect regions as CSV and as a COCO instance-segmentation file, and a
training set built from the reviewers' verdicts (a ZIP)."""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse

from app.api.deps import RuntimeDep
from app.api.params import PLAIN_TEXT_PATTERN, DefectFiltersDep, ModelVersion
from app.api.routing import is_head_request
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import VALIDATION_ERROR_RESPONSE
from app.services.dataset.export import DatasetOptions, dataset_zip, parse_ratios
from app.services.history.coco import coco_json
from app.services.history.regions_csv import REGION_CSV_COLUMNS, regions_csv

router = APIRouter(
    prefix="/export",
    tags=["Export"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


def _stream(
    request: Request, body: AsyncIterable[bytes], media_type: str, filename: str
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


async def dataset_options(
    split_by: Annotated[
        Literal["lot", "day"],
        Query(
            description="What the train/val/test split goes by: `lot` (the board context's"
            " lot of the board's first inspection; its UTC day when it has no lot) or `day`"
            " (UTC day of the board's first inspection). A board (its serial, else the"
            " image) is never in two splits."
        ),
    ] = "lot",
    ratios: Annotated[
        str,
        Query(
            max_length=64,
            pattern=PLAIN_TEXT_PATTERN,
            description="Shares of train, val and test: three non-negative numbers, e.g."
            " `80,10,10` or `0.7,0.2,0.1` (normalised to sum 1).",
            examples=["80,10,10"],
        ),
    ] = "80,10,10",
    model_version: ModelVersion = None,
) -> DatasetOptions:
    """The options of the dataset export.

    Raises:
        RequestValidationError: (422) `ratios` is not three non-negative numbers.
    """
    try:
        shares = parse_ratios(ratios)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "ratios"), "msg": str(exc), "input": ratios}]
        ) from exc
    return DatasetOptions(split_by=split_by, ratios=shares, model_version=model_version)


@router.get(
    "/dataset.zip",
    response_class=StreamingResponse,
    summary="Export a training set (inputs, label masks, COCO) from the reviewers' verdicts",
    responses={
        200: {
            "description": "A ZIP, streamed: `images/{split}/`, `masks/{split}/`,"
            " `annotations/{split}.json` (COCO, RLE), `README.txt`, `manifest.json`.",
            "content": {
                "application/zip": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "(ZIP bytes)",
                }
            },
        }
    },
)
async def export_dataset(
    request: Request,
    runtime: RuntimeDep,
    filters: DefectFiltersDep,
    options: Annotated[DatasetOptions, Depends(dataset_options)],
) -> Response:
    """Takes every filter of `/api/query/defects` (dates, batch, image, class, area,
    review state, disposition, board context) and `model_version`. Per split (`train`,
    `val`, `test`): the inputs as stored; label masks (0 background and false calls,
    category id for regions a reviewer confirmed `real`, 255 ignore for unjudged and
    `unsure` ones); a COCO file whose `annotations` are the confirmed defects (`iscrowd`
    0) plus the unjudged/unsure regions as ignore regions (`iscrowd` 1, `"review"` says
    which), and whose `hard_negatives` are the false calls. `manifest.json` lists every
    file's SHA-256 and size, the filters and the agent version (docs/dataset.md;
    `aoi-agent dataset verify FILE.zip` checks it)."""
    body = await dataset_zip(
        runtime.sessions,
        runtime.storage,
        filters,
        options,
        request.url.query,
        runtime.client.decode_limiter,
    )
    return _stream(request, body, "application/zip", f"dataset_{_stamp()}.zip")
