"""Principals, API keys, role bindings and the permission table (issue 15).

- ``roles``: the roles, the actions and which role each action needs (pure, no I/O);
- ``records``: the records kept on the access topic (``API_KEYS_TOPIC``) and their encodings;
- ``view``: the in-memory view every process checks requests against (no round trip per request);
- ``manage``: creating and removing principals, keys and bindings over a ``Registry``.
"""
