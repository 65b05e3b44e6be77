"""The control plane's HTTP API (FastAPI) over ``featurebus.platform.control``.

It lives in the serving runtime because the fixed layout has no other home for a web app
(``platform/`` must stay framework-free; a top-level ``featurebus.control`` package is not in the
layout): ``serving/`` is the runtime layer that owns HTTP, and ``serving/errors.py`` its one error
table. The control plane shares nothing else with the feature server: its own app, process
(``featurebus control``) and port.
"""
