"""The live dashboard: a page (bundled static files) and its JSON API.

``app.DashboardApp`` mounts ``/dashboard/`` on an aiohttp application (the gateway's admin
port, ``infergate serve``, ``infergate migrate run``); ``series.Sampler`` collects status
snapshots in the background into a bounded ring buffer; ``migration.MigrationView`` is an
``infergate.migrate.events`` sink that the page's migration panel shows.
"""
