"""A Canvas LMS simulator: the conference and Scheduler APIs with real Canvas behaviour.

``create_app(world)`` is the ASGI app; ``sample_world()`` a deterministic sample dataset;
``serve_in_thread(app)`` runs it on a free loopback port. The README's "The Canvas simulator" says what it covers.
"""
