"""The safety process's IPC: how a controller reaches it, and how it answers.

- ``link``: ``SafetyLink``, the interface the controller codes against, its notices and
  errors (start here);
- ``client``: ``SafetyClient``, the real link over the Unix socket;
- ``launch``: ``start_safety_process`` for a parent that runs the safety process as its
  child, and the child's handle (``SafetyChild``);
- ``local``: ``LocalSafety``, the same link to a safety core in the same process, on
  virtual clocks (scenario runner, fast tests);
- ``messages``: the wire messages (pydantic, versioned); ``framing``: newline-delimited
  JSON with a size limit; ``auth``: the key file and the challenge-response;
- ``dispatch`` and ``server``: the safety process's side (who may speak, the one-thread
  selector loop).
"""
