"""IPC-CFX message envelopes, built as the CFX SDK serialises them.

Source: the CFX SDK, github.com/IPCConnectedFactoryExchange/CFX, version 2.1 (CFX.dll's
Newtonsoft.Json serialisation: property names as in the C# classes, enums as their names,
`Guid` as its 36-character text, `TimeSpan` as `hh:mm:ss`, `DateTime` as ISO 8601, and the
envelope's `MessageBody` with a `"$type"` of `"<full class name>, CFX"`). docs/cfx.md names
the SDK file of each class and field used here.

Coordinates of a defect's `RegionOfInterest` are pixels of the inspected image (x to the
right, y down from the top-left corner): the model gives no board coordinates.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

CFX_VERSION = "2.1"  # CFXEnvelope.CFXVERSION
INSPECTION_NAME = "AOI_DEFECT_SEGMENTATION"

ENDPOINT_CONNECTED = "CFX.EndpointConnected"
HEARTBEAT = "CFX.Heartbeat"
WORK_STARTED = "CFX.Production.WorkStarted"
WORK_COMPLETED = "CFX.Production.WorkCompleted"
UNITS_INSPECTED = "CFX.Production.TestAndInspection.UnitsInspected"
UNITS_DISQUALIFIED = "CFX.Production.UnitsDisqualified"
LOG_ENTRY_RECORDED = "CFX.ResourcePerformance.LogEntryRecorded"

# A region's verdict (app.models.review.Verdict) as a CFX.Structures.VerificationResult.
VERDICT_VERIFICATION = {
    "real": "DefectConfirmed",
    "false_call": "DefectRejected",
    "unsure": "NotVerifiedYet",
}
# A board's disposition (app.models.review.Disposition) as the unit's VerificationResult:
# `pass` says its calls were false; `repair` and `scrap` confirm a defect.
DISPOSITION_VERIFICATION = {
    "pass": "DefectRejected",
    "repair": "DefectConfirmed",
    "scrap": "DefectConfirmed",
}


# A board side (docs/boards.md) as a `CFX.Structures.Surface` (CFX/Structures/Surface.cs):
# the top (component) side is the product's primary surface, the bottom its secondary.
SIDE_SURFACE = {"top": "PrimarySurface", "bottom": "SecondarySurface"}


@dataclass(frozen=True)
class CfxProduction:
    """What the board context (docs/boards.md) of an inspection tells the line, in CFX
    terms; every field optional.

    Attributes:
        recipe_name: the product (`RecipeName` of WorkStarted and UnitsInspected).
        recipe_revision: the recipe's revision (`Revision` / `RecipeRevision`).
        side: `top` or `bottom` (`RelevantSurface`, through SIDE_SURFACE).
        work_order: the lot (`WorkOrderIdentifier.WorkOrderId`).
        panel_position: the board's position on its panel (`UnitPositionNumber`,
            `UnitPosition.PositionNumber`).
        panel_id: the panel's barcode (`PrimaryIdentifier` of WorkStarted, WorkCompleted
            and UnitsDisqualified; `InspectedPanel.UnitIdentifier` of UnitsInspected).
        lane: the station's conveyor lane, from 1 (`WorkStarted.Lane`).
    """

    recipe_name: str | None = None
    recipe_revision: str | None = None
    side: str | None = None
    work_order: str | None = None
    panel_position: int | None = None
    panel_id: str | None = None
    lane: int | None = None

    def primary_identifier(self, unit_identifier: str) -> str:
        """The `PrimaryIdentifier` of a transaction: the panel's barcode when the board
        came on one (CFX/Production/WorkStarted.cs: "if multiple production units are
        moving through the process as a group (as in the case of a PCB panel ...), this
        would be an identifier that represents the entire group"), else the unit's."""
        return self.panel_id or unit_identifier

    @property
    def position_number(self) -> int:
        """`UnitPosition.PositionNumber`: the panel position, 1 (the whole unit) without."""
        return 1 if self.panel_position is None else self.panel_position

    @property
    def surface(self) -> str:
        """The `CFX.Structures.Surface` of `side` (`Unspecified` without one)."""
        return SIDE_SURFACE.get(self.side or "", "Unspecified")

    def work_order_identifier(self) -> dict[str, Any] | None:
        """A `CFX.Structures.WorkOrderIdentifier` (CFX/Structures/WorkOrderIdentifier.cs)
        for the lot, or None without one."""
        if self.work_order is None:
            return None
        return {"WorkOrderId": self.work_order, "Batch": None}


NO_PRODUCTION = CfxProduction()


@dataclass(frozen=True)
class CfxDefect:
    """One defect region as the agent knows it.

    Attributes:
        region_unique_id: the region's id (`regions.region_unique_id`).
        class_name: the defect class (becomes `DefectCode`).
        x, y, width, height: the region's bounding box, pixels.
        area_pixels: the region's area, pixels.
        confidence: 0–100 when the model gives one, else None.
    """

    region_unique_id: int
    class_name: str
    x: int
    y: int
    width: int
    height: int
    area_pixels: int
    confidence: float | None = None


def envelope(
    message_name: str,
    body: dict[str, Any],
    *,
    source: str,
    timestamp: datetime,
    unique_id: uuid.UUID,
) -> dict[str, Any]:
    """A `CFX.CFXEnvelope` (CFX/CFXEnvelope.cs) around `body`, as JSON-ready dict."""
    return {
        "MessageName": message_name,
        "Version": CFX_VERSION,
        "TimeStamp": timestamp.isoformat(),
        "UniqueID": str(unique_id),
        "Source": source,
        "Target": None,
        "RequestID": None,
        "MessageBody": {"$type": f"{message_name}, CFX", **body},
    }


def new_envelope(message_name: str, body: dict[str, Any], source: str) -> dict[str, Any]:
    """`envelope` stamped now (local time with its offset) with a new `UniqueID`."""
    return envelope(
        message_name,
        body,
        source=source,
        timestamp=datetime.now().astimezone(),
        unique_id=uuid.uuid4(),
    )


def endpoint_connected(handle: str, broker_url: str, address: str) -> dict[str, Any]:
    """The body of `CFX.EndpointConnected` (CFX/EndpointConnected.cs)."""
    return {"CFXHandle": handle, "RequestNetworkUri": broker_url, "RequestTargetAddress": address}


def heartbeat(handle: str, interval_s: float) -> dict[str, Any]:
    """The body of `CFX.Heartbeat` (CFX/Heartbeat.cs); `HeartbeatFrequency` is a .NET
    `TimeSpan` (`hh:mm:ss`)."""
    seconds = round(interval_s)
    frequency = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return {
        "CFXHandle": handle,
        "HeartbeatFrequency": frequency,
        "ActiveFaults": [],
        "ActiveRecipes": [],
    }


UnitStatus = Literal["Pass", "Fail", "Scrap"]


def _unit_position(
    unit_identifier: str, production: CfxProduction, status: UnitStatus = "Pass"
) -> dict[str, Any]:
    """A `CFX.Structures.UnitPosition` (CFX/Structures/UnitPosition.cs): the board by its
    own identifier (the first of the two ways the SDK allows) at its panel position
    (`PositionNumber`, 1 without one); its origin unknown (0, 0; `Z` null); `Status` a
    `CFX.Structures.UnitStatus` (CFX/Structures/UnitStatus.cs)."""
    return {
        "UnitIdentifier": unit_identifier,
        "PositionNumber": production.position_number,
        "PositionName": None,
        "X": 0.0,
        "Y": 0.0,
        "Z": None,
        "Rotation": 0.0,
        "FlipX": False,
        "FlipY": False,
        "Status": status,
    }


def work_started(
    transaction_id: uuid.UUID, unit_identifier: str, production: CfxProduction = NO_PRODUCTION
) -> dict[str, Any]:
    """The body of `CFX.Production.WorkStarted` (CFX/Production/WorkStarted.cs):
    `PrimaryIdentifier` the panel's barcode (else the unit's), `Lane` the conveyor lane,
    the board in `Units` at its panel position, and the 2.1 fields `RecipeName`
    (product), `Revision` (recipe revision), `RelevantSurface` (side) and
    `WorkOrderIdentifier` (lot), all from the board context."""
    return {
        "PrimaryIdentifier": production.primary_identifier(unit_identifier),
        "HermesIdentifier": None,
        "TransactionID": str(transaction_id),
        "Lane": production.lane,
        "UnitCount": 1,
        "Units": [_unit_position(unit_identifier, production)],
        "RecipeName": production.recipe_name,
        "Revision": production.recipe_revision,
        "RelevantSurface": production.surface,
        "WorkOrderIdentifier": production.work_order_identifier(),
    }


def work_completed(
    transaction_id: uuid.UUID,
    unit_identifier: str,
    result: Literal["Completed", "Failed"],
    production: CfxProduction = NO_PRODUCTION,
    unit_status: UnitStatus = "Pass",
) -> dict[str, Any]:
    """The body of `CFX.Production.WorkCompleted` (CFX/Production/WorkCompleted.cs);
    `result` is a `CFX.Structures.WorkResult`, `unit_status` the board's `UnitStatus`
    (`Fail` when a defect was found or the inspection failed). `PrimaryIdentifier` and
    the board's position as in `work_started`."""
    return {
        "TransactionID": str(transaction_id),
        "Result": result,
        "PrimaryIdentifier": production.primary_identifier(unit_identifier),
        "HermesIdentifier": None,
        "UnitCount": 1,
        "Units": [_unit_position(unit_identifier, production, unit_status)],
        "PerformanceImpacts": [],
    }


def _region_of_interest(defect: CfxDefect) -> dict[str, Any]:
    """A `CFX.Structures.Region` (CFX/Structures/Region.cs): the box as a closed polygon
    from its top-left corner (`Segment`s as in the SDK's UnitsInspected example)."""
    x0, y0 = float(defect.x), float(defect.y)
    x1, y1 = float(defect.x + defect.width), float(defect.y + defect.height)
    return {
        "StartPointX": x0,
        "StartPointY": y0,
        "RegionSegments": [
            {"X": x1, "Y": y0},
            {"X": x1, "Y": y1},
            {"X": x0, "Y": y1},
            {"X": x0, "Y": y0},
        ],
    }


def _defect(defect: CfxDefect, overlay_url: str | None, verification: str) -> dict[str, Any]:
    """A `CFX.Structures.Defect` (CFX/Structures/Defect.cs)."""
    images = (
        [
            {
                "MimeType": "image/png",
                "TransferMode": "OutOfBand",
                "ImageData": None,
                "ImageURL": overlay_url,
            }
        ]
        if overlay_url
        else []
    )
    return {
        "UniqueIdentifier": str(defect.region_unique_id),
        "DefectCode": defect.class_name,
        "DefectCategory": "AOI defect segmentation",
        "Description": f"{defect.class_name}, {defect.area_pixels} px",
        "Comments": None,
        "ComponentOfInterest": None,
        "RegionOfInterest": _region_of_interest(defect),
        "DefectImages": images,
        "Priority": None,
        "ConfidenceLevel": defect.confidence,
        "RelatedMeasurements": [],
        "RelatedSymptoms": [],
        "Verification": verification,
        "VerificationDetail": None,
    }


def _inspected_unit_body(
    *,
    transaction_id: uuid.UUID,
    method: Literal["AOI", "Human"],
    inspector: dict[str, Any] | None,
    unit_identifier: str,
    unit_verification: str,
    inspection: dict[str, Any],
    production: CfxProduction,
) -> dict[str, Any]:
    """A `UnitsInspected` body with one `InspectedUnit` holding `inspection`; the recipe
    (product and revision) and the board's panel position from `production`, and with a
    panel id the `InspectedPanel` naming the panel."""
    return {
        "TransactionId": str(transaction_id),
        "InspectionMethod": method,
        "SamplingInformation": None,
        "Inspector": inspector,
        "RecipeName": production.recipe_name,
        "RecipeRevision": production.recipe_revision,
        "InspectedUnits": [
            {
                "UnitIdentifier": unit_identifier,
                "UnitPositionNumber": production.panel_position,
                "OverallResult": inspection["Result"],
                "Inspections": [inspection],
                "Verification": unit_verification,
                "TotalInspectionCount": None,
            }
        ],
        "InspectedPanel": _inspected_panel(production.panel_id, inspection, unit_verification),
    }


def _inspected_panel(
    panel_id: str | None, inspection: dict[str, Any], verification: str
) -> dict[str, Any] | None:
    """A `CFX.Structures.InspectedPanel` (CFX/Structures/InspectedPanel.cs, CFX 1.6) for
    the panel the board came on, None without a panel id: `UnitIdentifier` the panel's
    barcode, `OverallResult` and `Verification` those of this transaction's inspection
    (of the one board of the panel the image shows), no panel-level `Inspections` (the
    model inspects boards, not fiducials or panel features)."""
    if panel_id is None:
        return None
    return {
        "UnitIdentifier": panel_id,
        "OverallResult": inspection["Result"],
        "Inspections": [],
        "Verification": verification,
        "TotalInspectionCount": None,
        "Stretch": None,
        "RecognizedStrokeDirection": None,
        "Fiducials": None,
        "PCBVariant": None,
    }


def _inspection(
    inspection_id: str,
    result: str,
    defects: list[dict[str, Any]],
    *,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    test_procedure: str | None = None,
    verification: str = "NotVerifiedYet",
    comment: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A `CFX.Structures.Inspection` (CFX/Structures/Inspection.cs)."""
    return {
        "UniqueIdentifier": inspection_id,
        "InspectionName": INSPECTION_NAME,
        "InspectionStartTime": started_at.isoformat() if started_at else None,
        "InspectionEndTime": ended_at.isoformat() if ended_at else None,
        "TestProcedure": test_procedure,
        "Comments": comment,
        "Result": result,
        "Verification": verification,
        "VerificationDetail": comment,
        "Error": error,
        "DefectsFound": defects,
        "Symptoms": None,
        "Measurements": [],
        "RefNo": None,
    }


def units_inspected(
    *,
    transaction_id: uuid.UUID,
    unit_identifier: str,
    inspection_id: str,
    defects: Sequence[CfxDefect],
    overlay_url: str | None,
    started_at: datetime | None,
    ended_at: datetime | None,
    test_procedure: str | None,
    failed_error: str | None = None,
    production: CfxProduction = NO_PRODUCTION,
) -> dict[str, Any]:
    """The body of `CFX.Production.TestAndInspection.UnitsInspected`
    (CFX/Production/TestAndInspection/UnitsInspected.cs) for one AOI inspection: one
    `InspectedUnit` (CFX/Structures/InspectedUnit.cs) with one `Inspection`
    (CFX/Structures/Inspection.cs) listing each region as a `Defect`.

    `OverallResult` (CFX/Structures/TestResult.cs) is `Failed` when a defect was found,
    `Error` when the inspection failed (`failed_error`), else `Passed`.
    """
    result = "Error" if failed_error else ("Failed" if defects else "Passed")
    inspection = _inspection(
        inspection_id,
        result,
        [_defect(d, overlay_url, "NotVerifiedYet") for d in defects],
        started_at=started_at,
        ended_at=ended_at,
        test_procedure=test_procedure,
        error=failed_error,
    )
    return _inspected_unit_body(
        transaction_id=transaction_id,
        method="AOI",
        inspector=None,
        unit_identifier=unit_identifier,
        unit_verification="NotVerifiedYet",
        inspection=inspection,
        production=production,
    )


def _operator(reviewer: str) -> dict[str, Any]:
    """A `CFX.Structures.Operator` (CFX/Structures/Operator.cs) for a reviewer."""
    return {
        "OperatorIdentifier": reviewer,
        "ActorType": "Human",
        "LastName": None,
        "FirstName": None,
        "LoginName": reviewer,
    }


def verification_inspected(
    *,
    unit_identifier: str,
    inspection_id: str,
    reviewer: str,
    defects: Sequence[tuple[CfxDefect, str]],
    unit_verification: str,
    overlay_url: str | None,
    comment: str | None,
    production: CfxProduction = NO_PRODUCTION,
) -> dict[str, Any]:
    """The body of `UnitsInspected` a verification station sends (a new TransactionId):
    `InspectionMethod` `Human`, the reviewer as `Inspector`, and each verified defect with
    its `Verification` (CFX/Structures/VerificationResult.cs: `DefectConfirmed` for a
    real defect, `DefectRejected` for a false call). `defects` pairs each region with its
    VerificationResult; `unit_verification` is the unit's. `Result` is `Failed` when a
    defect or the unit is confirmed, else `Passed`."""
    outcomes = {v for _, v in defects} | {unit_verification}
    result = "Failed" if "DefectConfirmed" in outcomes else "Passed"
    inspection = _inspection(
        inspection_id,
        result,
        [_defect(d, overlay_url, v) for d, v in defects],
        verification=unit_verification,
        comment=comment,
    )
    return _inspected_unit_body(
        transaction_id=uuid.uuid4(),
        method="Human",
        inspector=_operator(reviewer),
        unit_identifier=unit_identifier,
        unit_verification=unit_verification,
        inspection=inspection,
        production=production,
    )


def units_disqualified(
    unit_identifier: str, comment: str | None, production: CfxProduction = NO_PRODUCTION
) -> dict[str, Any]:
    """The body of `CFX.Production.UnitsDisqualified` (CFX/Production/UnitsDisqualified.cs)
    for a scrapped board: `Reason` `DefectiveRepairNotPossible`
    (CFX/Structures/DisqualificationReason.cs), the board in `Units` with `Status`
    `Scrap`; `PrimaryIdentifier` as in `work_started`."""
    return {
        "PrimaryIdentifier": production.primary_identifier(unit_identifier),
        "HermesIdentifier": None,
        "Reason": "DefectiveRepairNotPossible",
        "Comments": comment,
        "UnitCount": 1,
        "Units": [_unit_position(unit_identifier, production, "Scrap")],
    }


def log_entry_recorded(information_id: str, message: str, importance: str) -> dict[str, Any]:
    """The body of `CFX.ResourcePerformance.LogEntryRecorded`
    (CFX/ResourcePerformance/LogEntryRecorded.cs): an endpoint's log entry with its
    `Importance` (CFX/Structures/LogImportance.cs: Debug, Information, Warning, Error,
    Fatal). The SDK has no statistical-process-control message, so an SPC alarm is this
    (docs/cfx.md)."""
    return {
        "InformationId": information_id,
        "Message": message,
        "Importance": importance,
        "Lane": None,
        "Stage": None,
        "AdditionalData": None,
    }
