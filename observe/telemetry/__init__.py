"""Telemetry to an MQTT broker: the schema (``schema``, versioned, documented in
docs/telemetry.md), the durable ``outbox`` and the ``publisher``."""
