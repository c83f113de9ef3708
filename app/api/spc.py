"""SPC routes: p- and u-charts of the inspections with their alarms (docs/spc.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from app.api.deps import SessionDep, SettingsDep
from app.api.params import PLAIN_TEXT_PATTERN, ContextFilterDep, EndDate, ModelVersion, StartDate
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import VALIDATION_ERROR_RESPONSE
from app.models.spc import SpcAlarmList, SpcChart
from app.services.spc.alarms import AlarmRepository, recorded
from app.services.spc.service import ChartQuery, SpcService

router = APIRouter(
    prefix="/spc",
    tags=["System"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


async def get_spc_service(session: SessionDep, settings: SettingsDep) -> SpcService:
    """Control charts over this request's session."""
    return SpcService(session, settings)


SpcServiceDep = Annotated[SpcService, Depends(get_spc_service)]
Subgroup = Annotated[
    Literal["day", "shift"],
    Query(description="One point per production day, or per shift of SHIFTS."),
]
Baseline = Annotated[
    int | None,
    Query(
        ge=2,
        le=1000,
        description="Subgroups at the start that set the limits (default SPC_BASELINE_SUBGROUPS).",
    ),
]


def _query(
    start_date: StartDate = None,
    end_date: EndDate = None,
    subgroup: Subgroup = "day",
    baseline: Baseline = None,
    model_version: ModelVersion = None,
    context: ContextFilterDep = None,
) -> ChartQuery:
    return ChartQuery(start_date, end_date, subgroup, baseline, model_version, context)


ChartQueryDep = Annotated[ChartQuery, Depends(_query)]


@router.get("/p-chart", response_model=SpcChart, summary="p-chart of defective boards")
async def p_chart(service: SpcServiceDep, query: ChartQueryDep) -> SpcChart:
    """Fraction of defective boards (boards with at least one region) per production day
    or shift of the range (default: the last 30 days, at most 731), with p̄ and 3σ limits
    from the baseline and the Western Electric alarms (SPC_RULES)."""
    return await service.p_chart(query)


@router.get("/u-chart", response_model=SpcChart, summary="u-chart of defects per board")
async def u_chart(
    service: SpcServiceDep,
    query: ChartQueryDep,
    class_name: Annotated[
        str,
        Query(
            alias="class",
            min_length=1,
            max_length=128,
            pattern=PLAIN_TEXT_PATTERN,
            description="Defect class name, any case.",
        ),
    ],
) -> SpcChart:
    """Regions of one defect class per board inspected, per production day or shift,
    with ū and 3σ limits from the baseline and the Western Electric alarms."""
    return await service.u_chart(query, class_name)


@router.get("/alarms", response_model=SpcAlarmList, summary="Recorded SPC alarms")
async def alarms(
    session: SessionDep,
    open_only: Annotated[bool, Query(description="Only alarms not yet cleared.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> SpcAlarmList:
    """The excursions the alarm check (SPC_CHECK_CRON) recorded, newest first: one per
    excursion, with when it was raised and cleared."""
    rows = await AlarmRepository(session).listing(open_only, limit)
    return SpcAlarmList(alarms=[recorded(r) for r in rows])
