"""The report as an XLSX workbook (openpyxl, with native Excel charts) and a PDF
(ReportLab, charts drawn with its own graphics): both pure Python, no display, no browser.

CPU-bound: call them in a thread (`run_in_threadpool`) from the event loop.
"""

from __future__ import annotations

import io
from typing import Any

from fastapi.concurrency import run_in_threadpool
from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Circle, Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.models.spc import SpcChart
from app.services.reports.content import Report

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF_MEDIA_TYPE = "application/pdf"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f} %"


def summary_rows(report: Report) -> list[tuple[str, Any]]:
    """The summary's (label, value) lines, shared by both formats."""
    return [
        ("Production day", report.day.isoformat()),
        ("Shift", report.shift or "whole day"),
        ("Time zone", report.timezone),
        ("From (UTC)", report.start.isoformat()),
        ("To (UTC)", report.end.isoformat()),
        ("Boards inspected", report.boards),
        ("Defective boards (≥ 1 region)", report.defective),
        ("Yield", _percent(report.yield_rate)),
        ("Defect regions", report.regions),
        ("Regions reviewed", report.reviewed_regions),
        ("False-call rate", _percent(report.false_call_rate)),
        ("Open p-chart alarms", sum(a.open for a in report.p_chart.alarms)),
    ]


def _chart_rows(chart: SpcChart) -> list[list[Any]]:
    return [
        [p.key, p.boards, p.count, p.value, p.center, p.lcl, p.ucl, ",".join(map(str, p.rules))]
        for p in chart.points
    ]


CHART_HEADER = ["Subgroup", "Boards", "Count", "Value", "Centre", "LCL", "UCL", "WE rules"]


def render_xlsx(report: Report) -> bytes:
    """The report as an XLSX workbook: sheets Summary, Pareto, p-chart, u-chart (when a
    class has regions) and Top boards, with Excel charts of the Pareto and control charts."""
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    summary.append([report.title])
    for row in summary_rows(report):
        summary.append(list(row))
    summary.column_dimensions["A"].width = 32
    summary.column_dimensions["B"].width = 34

    pareto = book.create_sheet("Pareto")
    pareto.append(["Class", "Regions", "Share", "Cumulative share"])
    for line in report.pareto:
        pareto.append([line.class_name, line.regions, line.share, line.cumulative])
    if report.pareto:
        bars = BarChart()
        bars.title = "Regions per class"
        bars.add_data(
            Reference(pareto, min_col=2, min_row=1, max_row=len(report.pareto) + 1),
            titles_from_data=True,
        )
        bars.set_categories(Reference(pareto, min_col=1, min_row=2, max_row=len(report.pareto) + 1))
        pareto.add_chart(bars, "F2")

    charts = [("p-chart", report.p_chart), ("u-chart", report.u_chart)]
    for title, chart in charts:
        if chart is None:
            continue
        sheet = book.create_sheet(title)
        sheet.append(CHART_HEADER)
        for values in _chart_rows(chart):
            sheet.append(values)
        if chart.points:
            lines = LineChart()
            lines.title = title + (f" {chart.class_name}" if chart.class_name else "")
            last = len(chart.points) + 1
            lines.add_data(
                Reference(sheet, min_col=4, max_col=7, min_row=1, max_row=last),
                titles_from_data=True,
            )
            lines.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=last))
            sheet.add_chart(lines, "J2")

    top = book.create_sheet("Top boards")
    top.append(["img_unique_id", "Regions"])
    for img_id, n in report.top_boards:
        top.append([img_id, n])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bar_drawing(report: Report) -> Drawing:
    drawing = Drawing(170 * mm, 60 * mm)
    bars = VerticalBarChart()
    bars.x, bars.y, bars.width, bars.height = 15 * mm, 15 * mm, 150 * mm, 40 * mm
    bars.data = [[line.regions for line in report.pareto]]
    bars.categoryAxis.categoryNames = [line.class_name for line in report.pareto]
    bars.categoryAxis.labels.angle = 30
    bars.categoryAxis.labels.boxAnchor = "ne"
    bars.valueAxis.valueMin = 0
    bars.bars[0].fillColor = colors.HexColor("#0d6efd")
    drawing.add(bars)
    return drawing


def _control_drawing(chart: SpcChart, title: str) -> Drawing:
    """The control chart: values (flagged ones red), centre line, UCL and LCL."""
    drawing = Drawing(170 * mm, 65 * mm)
    drawing.add(String(0, 60 * mm, title, fontSize=9))
    points = [(i, p) for i, p in enumerate(chart.points)]
    series = [
        [(i, p.value) for i, p in points],
        [(i, p.center) for i, p in points],
        [(i, p.ucl) for i, p in points if p.ucl is not None],
        [(i, p.lcl) for i, p in points if p.lcl is not None],
    ]
    series = [s if s else [(0, 0.0)] for s in series]
    top = max((v for s in series for _, v in s), default=0.0) * 1.1 or 1.0
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 15 * mm, 10 * mm, 150 * mm, 45 * mm
    plot.data = series
    plot.lines[0].strokeColor = colors.HexColor("#0d6efd")
    plot.lines[1].strokeColor = colors.HexColor("#198754")
    for n in (2, 3):
        plot.lines[n].strokeColor = colors.grey
        plot.lines[n].strokeDashArray = [3, 2]
    plot.xValueAxis.valueMin = 0
    plot.xValueAxis.valueMax = max(len(points) - 1, 1)
    plot.yValueAxis.valueMin = 0
    plot.yValueAxis.valueMax = top
    drawing.add(plot)
    for i, p in points:
        if p.rules:  # out of control: a red marker over the point
            x = plot.x + plot.width * i / max(len(points) - 1, 1)
            y = plot.y + plot.height * p.value / top
            drawing.add(Circle(x, y, 2.5, fillColor=colors.red, strokeColor=colors.red))
    return drawing


def _table(rows: list[list[Any]]) -> Table:
    table = Table(rows, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e9ecef")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    return table


def render_pdf(report: Report) -> bytes:
    """The report as an A4 PDF: summary, Pareto (table and bars), the p-chart and u-chart
    (points flagged by a Western Electric rule marked), their alarms, and the top boards."""
    styles = getSampleStyleSheet()
    story: list[Any] = [Paragraph(report.title, styles["Title"])]
    story.append(_table([["Figure", "Value"], *[[k, str(v)] for k, v in summary_rows(report)]]))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("Pareto of defect classes", styles["Heading2"]))
    if report.pareto:
        story.append(
            _table(
                [["Class", "Regions", "Share", "Cumulative"]]
                + [
                    [c.class_name, c.regions, _percent(c.share), _percent(c.cumulative)]
                    for c in report.pareto
                ]
            )
        )
        story.append(_bar_drawing(report))
    else:
        story.append(Paragraph("No defect region in the period.", styles["Normal"]))
    for chart in (report.p_chart, report.u_chart):
        if chart is None:
            continue
        name = (
            "p-chart: fraction of defective boards"
            if chart.kind == "p"
            else (f"u-chart: {chart.class_name} defects per board")
        )
        title = f"centre {chart.center:.4f}, {len(chart.points)} subgroups"
        heading = Paragraph(name, styles["Heading2"])
        story.append(KeepTogether([heading, _control_drawing(chart, title)]))
        for a in chart.alarms:
            state = "open" if a.open else "cleared"
            story.append(
                Paragraph(
                    f"Alarm ({state}): rule {a.rule}, {a.rule_text}, {a.side}, "
                    f"{a.first_key} to {a.last_key}",
                    styles["Normal"],
                )
            )
    story.append(Paragraph("Top boards (most regions)", styles["Heading2"]))
    story.append(_table([["img_unique_id", "Regions"], *[[i, n] for i, n in report.top_boards]]))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=report.title).build(story)
    return out.getvalue()


async def render(report: Report, fmt: str) -> tuple[bytes, str, str]:
    """(file bytes, media type, file name) of the report as `pdf` or `xlsx`, rendered in a
    worker thread. The name is `aoi-report-2026-12-07[-A].pdf`."""
    renderer, media_type = (
        (render_pdf, PDF_MEDIA_TYPE)
        if fmt == "pdf"
        else (
            render_xlsx,
            XLSX_MEDIA_TYPE,
        )
    )
    data = await run_in_threadpool(renderer, report)
    stem = f"aoi-report-{report.day.isoformat()}" + (f"-{report.shift}" if report.shift else "")
    return data, media_type, f"{stem}.{fmt}"
