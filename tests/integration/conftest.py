"""Fixtures shared by the integration tests: the real alert receivers (``tests/support``)."""

from tests.support.alert_receivers import smtp_server, webhook

__all__ = ["smtp_server", "webhook"]
