"""The HTTP side: ICS feeds, subscribe pages, /healthz and /metrics (Starlette + uvicorn)."""
