"""A small OpenAI-compatible inference server on transformers for CPU, mirroring vLLM 0.33's API.

For the embedded default and the tests; not a vLLM replacement. ``python -m arpo_backends.serve --model tiny`` (or
``arpo serve``) serves ``/v1/completions`` (token-id prompts, ``logprobs``, ``return_token_ids``),
``/v1/chat/completions``, ``/v1/models``, ``/health``, ``/tokenize``, ``/detokenize`` and ``/v1/load_weights``.
Concurrent requests are batched token by token. Modules: ``protocol`` (bodies), ``params`` (checks),
``sampling`` (one step's sampling), ``kv`` (the batch cache), ``engine`` (the decode loop), ``scheduler``
(async batching, weight reloads), ``responses``, ``chat``, ``weights``, ``loader``, ``app``, ``cli``, and
``testing`` (``serve_in_thread``: a real server on a free port for tests).
Needs the ``serve`` extra: ``pip install 'arpo-backends[serve]'``.
"""
