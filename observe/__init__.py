"""Views of benches that can never command them (S17).

- ``feed``: one bench's safety process as an IPC observer (its own key), reconnecting
  with backoff, with the state a view needs (snapshot, journal tail, link health);
- ``view``: that state as plain JSON for people (each channel, each drug's total over
  its channels, the relay handover, alarms with their scope, plot series, limits),
  shared by the dashboard and the telemetry's status message;
- ``dashboard``: ``pumpctl dashboard``, a read-only web page per bench (Starlette, SSE);
- ``telemetry``: ``pumpctl telemetry``, the bench published to an MQTT broker through a
  durable outbox;
- ``fleet``: ``pumpctl fleet``, every bench on a broker as a tile.

Imports from ``safety``: its pure parts and its IPC observer client only (checked by
``tests/test_import_rules.py``).
"""
