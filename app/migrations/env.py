"""Alembic environment: runs migrations over a synchronous psycopg 3 connection.

The database URL comes from `config.attributes["database_url"]` (set by the agent
when it migrates at start-up) or else from the settings (`DATABASE_URL`).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import app.models.rollups  # noqa: F401  (registers the rollup tables)
from app.config import get_settings
from app.models import replay_runs as _replay_runs  # noqa: F401  (registers the replay tables)
from app.models import spc_alarms as _spc_alarms  # noqa: F401  (registers the SPC alarm table)
from app.models import webhooks as _webhooks  # noqa: F401  (registers the webhook tables)
from app.models.database import Base
from app.services.database.session import sqlalchemy_url

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or get_settings().database_url
    if not url:
        raise RuntimeError(
            "no database to migrate: set DATABASE_URL (python run.py migrates the embedded one)"
        )
    return str(url)


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=sqlalchemy_url(_database_url()), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations in one transaction over a fresh connection."""
    engine = create_engine(sqlalchemy_url(_database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
