"""OpenAI-compatible HTTP server over the engine (``hulumed serve``; needs the ``serve`` extra).

settings.py  limits and switches (one dataclass)
protocol.py  request / response shapes of /v1/chat/completions
media.py     OpenAI message parts -> hulumed conversation parts (data: URIs, media root, remote URLs, limits)
batcher.py   admission (bounded queue) and the hand-over of prepared requests to the engine, which batches them
metrics.py   Prometheus counters, gauges and the latency histogram
app.py       the FastAPI application (routes, auth, errors, streaming)
background.py  ``serving(engine, settings)``: the server in a thread on a free loopback port
commands.py  the ``serve`` CLI verb
"""
