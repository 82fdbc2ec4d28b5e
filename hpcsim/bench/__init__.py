"""``hpcsim bench``: the benchmark suite (coupling overhead, scaling, memory, HELICS exchange) and the
performance model fitted from it. Not part of the tests: figures move with the machine's load."""
