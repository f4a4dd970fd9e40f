"""One module per ``pumpctl`` sub-command; ``controller.cli`` wires them together."""
