"""``bertkit serve``: an HTTP server (TEI- and OpenAI-compatible JSON) over one model.

:mod:`.queue` batches concurrent requests through one worker thread, :mod:`.metrics` keeps the
Prometheus counters; :mod:`.app` (FastAPI, from the ``serve`` extra) and :mod:`.cli` are imported
only by the command, so ``import bertkit`` never needs the extra.
"""
