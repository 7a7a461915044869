"""The state store: what calbridge saw, rendered and wrote (SQLAlchemy 2 + Alembic)."""

from bridge.state.db import default_state_url
from bridge.state.store import AccountStatus, StateStore, open_state

__all__ = ["AccountStatus", "StateStore", "default_state_url", "open_state"]
