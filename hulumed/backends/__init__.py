"""The backends room: every implementation of the engine contract (``hulumed.interface.Engine``).

    hf.py           HFEngine: transformers ``generate`` behind one scheduler thread (batching by tokens, streams,
                    cancellation, failure isolation, structured output) for the first generation
    scheduler.py    the thread that owns a transformers model: admission (rows, padded tokens, equal parameters),
                    failure isolation (a failing batch retried request by request), close at exit
    hf_qwen3_vl.py  Qwen3VLEngine: the same scheduler for the second generation (stock Qwen3-VL-MoE / Qwen3.5)
    vllm.py         VllmEngine: vLLM's async engine (continuous batching, tensor parallelism), first generation
    endpoint.py     EndpointEngine: OpenAI-compatible servers (``hulumed eval --endpoint``)

What all of them share lives in ``hulumed.interface`` (prepared-or-conversation, end-token set, model revision),
``hulumed.detokenizer`` (streamed text) and ``hulumed.generation`` (result decoding). ``hulumed.load`` picks the
backend (``loading.py``); edges only ever see the ``Engine`` protocol.
"""
