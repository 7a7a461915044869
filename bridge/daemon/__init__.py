"""The daemon: one asyncio process running the per-account sync cycle on a schedule and the
feed server, speaking systemd's notify protocol."""
