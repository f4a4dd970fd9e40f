"""``pumpctl fleet``: every bench on an MQTT broker as a tile (``model``, ``app``)."""
