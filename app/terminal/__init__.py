"""The terminal client: ``chorus ask`` (answers side by side, live) and ``chorus models
--server``. ``board`` (what is known) and ``render`` (how it looks) are pure; ``sources``
reads a server or runs the engine in-process; ``ask`` drives the screen; ``commands`` adds
the sub-commands to ``chorus``."""
