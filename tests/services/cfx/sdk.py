"""The CFX SDK's classes as a checker of the JSON the agent publishes.

Field names and types transcribed from the CFX SDK's C# classes
(github.com/IPCConnectedFactoryExchange/CFX, v2.1; docs/cfx.md names each file).
"""

from __future__ import annotations

import re
from typing import Any

UUID_TEXT = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# The CFX SDK's classes (IPCConnectedFactoryExchange/CFX, v2.1): property → JSON type(s).
# "uuid" is a Guid's text; "time" an ISO 8601 DateTime; "?" allows null.
SDK: dict[str, dict[str, str]] = {
    "CFXEnvelope": {
        "MessageName": "str",
        "Version": "str",
        "TimeStamp": "time",
        "UniqueID": "uuid",
        "Source": "str?",
        "Target": "str?",
        "RequestID": "str?",
        "MessageBody": "dict",
    },
    "CFX.EndpointConnected": {
        "CFXHandle": "str",
        "RequestNetworkUri": "str?",
        "RequestTargetAddress": "str?",
    },
    "CFX.Heartbeat": {
        "CFXHandle": "str",
        "HeartbeatFrequency": "str",
        "ActiveFaults": "list",
        "ActiveRecipes": "list",
    },
    "CFX.Production.WorkStarted": {
        "PrimaryIdentifier": "str?",
        "HermesIdentifier": "str?",
        "TransactionID": "uuid",
        "Lane": "int?",
        "UnitCount": "int",
        "Units": "list",
        "RecipeName": "str?",
        "Revision": "str?",
        "RelevantSurface": "str",
        "WorkOrderIdentifier": "dict?",
    },
    "CFX.Production.WorkCompleted": {
        "TransactionID": "uuid",
        "Result": "str",
        "PrimaryIdentifier": "str?",
        "HermesIdentifier": "str?",
        "UnitCount": "int",
        "Units": "list",
        "PerformanceImpacts": "list",
    },
    "CFX.Production.TestAndInspection.UnitsInspected": {
        "TransactionId": "uuid",
        "InspectionMethod": "str",
        "SamplingInformation": "dict?",
        "Inspector": "dict?",
        "RecipeName": "str?",
        "RecipeRevision": "str?",
        "InspectedUnits": "list",
        "InspectedPanel": "dict?",
    },
    # CFX/ResourcePerformance/LogEntryRecorded.cs
    "CFX.ResourcePerformance.LogEntryRecorded": {
        "InformationId": "str?",
        "Message": "str?",
        "Importance": "str",
        "Lane": "int?",
        "Stage": "dict?",
        "AdditionalData": "dict?",
    },
    "CFX.Production.UnitsDisqualified": {
        "PrimaryIdentifier": "str?",
        "HermesIdentifier": "str?",
        "Reason": "str",
        "Comments": "str?",
        "UnitCount": "int",
        "Units": "list",
    },
    "InspectedUnit": {
        "UnitIdentifier": "str",
        "UnitPositionNumber": "int?",
        "OverallResult": "str",
        "Inspections": "list",
        "Verification": "str",
        "TotalInspectionCount": "int?",
    },
    # CFX/Structures/InspectedPanel.cs (CFX 1.6)
    "InspectedPanel": {
        "UnitIdentifier": "str",
        "OverallResult": "str",
        "Inspections": "list",
        "Verification": "str",
        "TotalInspectionCount": "int?",
        "Stretch": "float?",
        "RecognizedStrokeDirection": "str?",
        "Fiducials": "list?",
        "PCBVariant": "str?",
    },
    "Inspection": {
        "UniqueIdentifier": "str",
        "InspectionName": "str",
        "InspectionStartTime": "time?",
        "InspectionEndTime": "time?",
        "TestProcedure": "str?",
        "Comments": "str?",
        "Result": "str",
        "Verification": "str",
        "VerificationDetail": "str?",
        "Error": "str?",
        "DefectsFound": "list",
        "Symptoms": "list?",
        "Measurements": "list",
        "RefNo": "int?",
    },
    "Defect": {
        "UniqueIdentifier": "str",
        "DefectCode": "str",
        "DefectCategory": "str?",
        "Description": "str?",
        "Comments": "str?",
        "ComponentOfInterest": "dict?",
        "RegionOfInterest": "dict",
        "DefectImages": "list",
        "Priority": "int?",
        "ConfidenceLevel": "float?",
        "RelatedMeasurements": "list",
        "RelatedSymptoms": "list",
        "Verification": "str",
        "VerificationDetail": "str?",
    },
    "Region": {"StartPointX": "float", "StartPointY": "float", "RegionSegments": "list"},
    "Segment": {"X": "float", "Y": "float"},
    "Image": {"MimeType": "str", "TransferMode": "str", "ImageData": "str?", "ImageURL": "str?"},
    "UnitPosition": {
        "UnitIdentifier": "str",
        "PositionNumber": "int",
        "PositionName": "str?",
        "X": "float",
        "Y": "float",
        "Z": "float?",
        "Rotation": "float",
        "FlipX": "bool",
        "FlipY": "bool",
        "Status": "str",
    },
    "WorkOrderIdentifier": {"WorkOrderId": "str", "Batch": "str?"},
    "Operator": {
        "OperatorIdentifier": "str?",
        "ActorType": "str",
        "LastName": "str?",
        "FirstName": "str?",
        "LoginName": "str?",
    },
}
# Enums of the SDK (CFX/Structures/*.cs) the agent uses.
ENUMS = {
    "TestResult": {"Passed", "Failed", "Error", "Aborted", "Skipped"},
    "VerificationResult": {
        "NotVerifiedYet",
        "DefectConfirmed",
        "DefectRejected",
        "DefectAccepted",
        "DefectRepaired",
        "DefectClosed",
    },
    "WorkResult": {"Completed", "Failed", "Aborted", "Skipped"},
    "InspectionMethod": {"Human", "AOI", "SPI", "AXI"},
    "Surface": {"Unspecified", "PrimarySurface", "SecondarySurface"},
    "LogImportance": {"Debug", "Information", "Warning", "Error", "Fatal"},
    "UnitStatus": {"Pass", "Fail", "Scrap", "Skip"},
}


def _check(kind: str, value: dict[str, Any]) -> None:
    """Assert that `value` has exactly the SDK class `kind`'s properties (as the SDK's
    serialiser writes every one, null included), each of its type."""
    fields = SDK[kind]
    unknown = set(value) - set(fields) - {"$type"}
    assert not unknown, f"{kind} has properties the SDK does not: {unknown}"
    missing = set(fields) - set(value)
    assert not missing, f"{kind} lacks the SDK's properties {missing}"
    for name, got in value.items():
        if name == "$type":
            continue
        want = fields[name]
        base, nullable = want.rstrip("?"), want.endswith("?")
        if got is None:
            assert nullable, f"{kind}.{name} is null, the SDK's {want} is not nullable"
            continue
        if base == "uuid":
            assert isinstance(got, str), f"{kind}.{name}={got!r}"
            assert re.match(UUID_TEXT, got), f"{kind}.{name}={got!r}"
        elif base == "time":
            assert isinstance(got, str), f"{kind}.{name}={got!r}"
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", got), f"{kind}.{name}={got!r}"
        elif base == "float":
            assert isinstance(got, int | float), f"{kind}.{name}={got!r}"
            assert not isinstance(got, bool), f"{kind}.{name}={got!r}"
        else:
            typ = {"str": str, "int": int, "list": list, "dict": dict, "bool": bool}[base]
            assert isinstance(got, typ), f"{kind}.{name} is {type(got).__name__}, not {want}"


def check_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """Check an envelope and its body (recursively) against the SDK; returns the body."""
    _check("CFXEnvelope", envelope)
    assert envelope["Version"] == "2.1"
    name = envelope["MessageName"]
    body = envelope["MessageBody"]
    assert body["$type"] == f"{name}, CFX"
    _check(name, body)
    for unit in body.get("Units", []):
        _check("UnitPosition", unit)
        assert unit["Status"] in ENUMS["UnitStatus"]
    if name.endswith("UnitsInspected"):
        assert body["InspectionMethod"] in ENUMS["InspectionMethod"]
        if body["Inspector"] is not None:
            _check("Operator", body["Inspector"])
        panel = body["InspectedPanel"]
        if panel is not None:
            _check("InspectedPanel", panel)
            assert panel["OverallResult"] in ENUMS["TestResult"]
            assert panel["Verification"] in ENUMS["VerificationResult"]
        for unit in body["InspectedUnits"]:
            _check("InspectedUnit", unit)
            assert unit["OverallResult"] in ENUMS["TestResult"]
            assert unit["Verification"] in ENUMS["VerificationResult"]
            for inspection in unit["Inspections"]:
                _check("Inspection", inspection)
                assert inspection["Result"] in ENUMS["TestResult"]
                for defect in inspection["DefectsFound"]:
                    _check("Defect", defect)
                    assert defect["Verification"] in ENUMS["VerificationResult"]
                    _check("Region", defect["RegionOfInterest"])
                    for segment in defect["RegionOfInterest"]["RegionSegments"]:
                        _check("Segment", segment)
                    for image in defect["DefectImages"]:
                        _check("Image", image)
    if name.endswith("WorkStarted"):
        assert body["RelevantSurface"] in ENUMS["Surface"]
        if body["WorkOrderIdentifier"] is not None:
            _check("WorkOrderIdentifier", body["WorkOrderIdentifier"])
    if name.endswith("LogEntryRecorded"):
        assert body["Importance"] in ENUMS["LogImportance"]
    if name.endswith("WorkCompleted"):
        assert body["Result"] in ENUMS["WorkResult"]
    return body
