"""Physical-mode physics: pure functions with units in their names.

``kv``        weights and KV-cache bytes per GPU, KV budget, concurrency (reserve / paged)
``roofline``  decode step and prefill times from bytes and FLOPs
``power``     per-GPU power from the operating point (memory/compute utilisation), DVFS cap
``energy``    energy per token, per query, tokens per joule
``calibration`` the efficiency and power coefficients fitted to measured H100 runs

Nothing here imports pandas, scipy or pyomo.
"""
