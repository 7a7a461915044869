"""The PostgreSQL the tests start: reachable on loopback only, one empty database per test."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, text

from tests.helpers.postgres import Cluster


def test_fresh_database_is_empty_and_private(pg_cluster: Cluster, pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("select current_user")).scalar() == "calbridge"
            conn.execute(text("create table marker (n int)"))
            listen = conn.execute(text("show listen_addresses")).scalar()
            assert listen == "127.0.0.1"
    finally:
        engine.dispose()
    with pg_cluster.database() as other:
        engine = create_engine(other)
        try:
            with engine.connect() as conn:
                tables = conn.execute(
                    text("select count(*) from pg_tables where schemaname = 'public'")
                ).scalar()
            assert tables == 0
        finally:
            engine.dispose()


def test_dropped_database_is_gone(pg_cluster: Cluster) -> None:
    name = pg_cluster.fresh_database()
    with psycopg.connect(pg_cluster.dsn(name)):
        pass
    pg_cluster.drop_database(name)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("select count(*) from pg_database where datname = %s", (name,))
        assert row.fetchone() == (0,)
