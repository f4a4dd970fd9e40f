"""The ``pumpctl`` command line: the entry point (``cli.main``), one module per
sub-command (``cli.commands``) and the demo (``cli.demo``), which runs a whole bench and
checks itself with ``verification``."""
