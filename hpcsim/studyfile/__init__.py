"""The study file's keys, each declared once (:mod:`keys`: a dataclass field with its section, TOML name, unit
and help), and the ``[dynamics]`` section (:mod:`dynamics`). :mod:`hpcsim.study` declares the steady sections
and reads a file with the machinery here; the dynamic study (:mod:`hpcsim.dynamics`) reads its settings from
:class:`dynamics.DynamicsSpec` without importing the study loader's internals, and nothing here imports
:mod:`hpcsim.dynamics` or :mod:`hpcsim.study`.
"""
