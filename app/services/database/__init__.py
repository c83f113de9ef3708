"""PostgreSQL: sessions and units of work, the embedded server, migrations, repositories."""
