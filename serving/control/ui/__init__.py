"""The web UI at ``/ui``: server-rendered pages (Jinja2) made interactive with htmx, over the
same guarded services as the JSON API. Static assets (htmx, cytoscape.js, the stylesheet) are
vendored in ``static/`` and served from the package: no CDN, works offline."""

from __future__ import annotations

from featurebus.serving.control.ui.app import UiSettings, mount_ui

__all__ = ["UiSettings", "mount_ui"]
