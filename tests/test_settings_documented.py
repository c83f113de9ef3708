"""Every setting a user can give is documented where a user looks for it.

The agent's settings (`app/config.py`) each appear in `.env.example` (set or commented out,
as `NAME=`) and by name in `README.md` or `docs/`; the reference model service's settings
(`segformer_service/config.py`) each appear in the settings table of
`docs/reference-model-service.md`. A setting added without its documentation fails here.
"""

from __future__ import annotations

import re

import pytest

from app.config import Settings
from segformer_service.config import ServiceSettings
from tests.support import REPO_ROOT

ENV_EXAMPLE = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
DOCS = "\n".join(
    path.read_text(encoding="utf-8")
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
)
REFERENCE_DOC = (REPO_ROOT / "docs" / "reference-model-service.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_agent_setting_is_in_env_example_and_docs(field: str) -> None:
    variable = field.upper()
    assert re.search(rf"^#?\s*{variable}=", ENV_EXAMPLE, re.MULTILINE), (
        f"{variable} (app/config.py) is missing from .env.example"
    )
    assert re.search(rf"\b{variable}\b", DOCS), (
        f"{variable} (app/config.py) is named in neither README.md nor docs/"
    )


@pytest.mark.parametrize("field", sorted(ServiceSettings.model_fields))
def test_reference_service_setting_is_in_its_doc(field: str) -> None:
    assert f"`{field}`" in REFERENCE_DOC, (
        f"{field} (segformer_service/config.py) is missing from the settings table of"
        " docs/reference-model-service.md"
    )
