"""The discrete-event simulator: a plan's pools run request by request.

``core``    one pool (join-shortest-queue over instances, slots, paged KV, preemption)
``tables``  step time and power by batch and held KV, tabulated once per pool
``trace``   replayed arrivals and the per-request trace file (``--trace-out``)
``run``     ``simulate(problem, topology, ...)``: routing, every pool, the fleet's figures
``disagg``  split prefill/decode pools (prefill queue, KV transfer, decode pool)
"""
