"""Pump drivers: the ``PumpDriver`` interface (``base``), the in-process mock, NE-1000,
Harvard and Modbus, and the registry that loads one by name. Only the safety process
imports this package: nothing else may reach what delivers a drug."""
