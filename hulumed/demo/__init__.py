"""``hulumed demo``: a Gradio web app (chat over images, videos and volumes, with a slice viewer).

Gradio is optional (the ``demo`` extra) and imported only by ``app.py``. The app logic lives in plain modules
that know nothing of Gradio, so it is tested directly:

* ``attachments`` — uploaded files -> typed attachments (image | video | volume) and their conversation parts;
* ``viewer``      — what the model will see: volume slices (through the processor's own loader), the viewer
  slice, sampled video frames with timestamps;
* ``estimates``   — visual tokens (before / after reduction) and memory per input, from the engine;
* ``session``     — one browser session's conversation and pending attachments;
* ``chat``        — one turn: engine stream -> chat messages (thinking block, stop, errors);
* ``app``         — the Blocks layout wiring the above; ``commands`` — the CLI verb.
"""
