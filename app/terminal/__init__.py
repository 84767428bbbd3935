"""The terminal client: ``chorus ask`` (answers side by side, live), ``chorus chat`` (a
conversation, each model with its own history), ``chorus logs`` and ``chorus models
--server``/``default``. ``board`` (what is known) and ``render`` (how it looks) are pure;
``sources`` reads a server or runs the engine in-process; ``ask`` drives the screen;
``transcript`` prints finished answers as Markdown; ``logstore`` keeps every exchange in
SQLite under ``home``; ``commands``, ``chat`` and ``logview`` add the sub-commands."""
