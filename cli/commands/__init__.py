"""One module per ``pumpctl`` sub-command; ``cli.main`` wires them together."""
