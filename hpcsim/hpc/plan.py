"""Placement plan: a study on a cluster → which node runs what, with expected memory and time.

Placement (one SLURM job):

- node 0 runs the root broker and the transmission federate; every node runs one sub-broker, and every
  federate talks to the sub-broker of its own node. A node keeps one core for its sub-broker (node 0's
  root broker shares it) and node 0 one more for the transmission federate;
- the other cores run feeder ranks: one MPI rank = one feeder-group federate. Ranks are numbered node by
  node (node 0 first) and feeders are cut into contiguous, equal-cost runs over the ranks (one study has one
  feeder model, so equal cost = equal count ±1); contiguous runs keep a bus's clones together, so a rank
  subscribes to few voltages;
- ranks are spread over the nodes as evenly as their free cores allow (node 0 gets the remainder last, it
  already hosts the transmission federate), as many as there are feeders or cores, whichever is fewer;
- if a node's expected memory exceeds its usable share, fewer ranks per node are tried (each then holds
  more feeders, which saves the per-process base memory); if even one rank per node does not fit, the plan
  fails with the number of nodes it would need.

Time per coupling iteration = the busiest rank's feeder solves + the transmission power flow + the HELICS
exchange (:mod:`hpcsim.hpc.costs`). The engine mode (one OpenDSS engine per clone, or one shared per
rank) follows the study; ``auto`` keeps separate engines while they fit with as many ranks as shared ones. Everything here is pure arithmetic on counts: :func:`plan_study` reads the
study's case once and the rest takes milliseconds even for ACTIVSg70k on 512 nodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcsim.errors import PlanError
from hpcsim.hpc.costs import DEFAULT, CostModel

if TYPE_CHECKING:
    from hpcsim.metadata import BoundaryMap
    from hpcsim.study import Study

BROKER_CORES = 1  # per node: its sub-broker (+ the root broker on node 0)
TRANSMISSION_CORES = 1  # node 0
PORT_BASE, PORT_SLOTS, PORT_STRIDE = 23400, 2000, 4  # below the ephemeral range; zmq brokers use port and port+1
_WALLTIME_RE = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
_SLURM_WORD_RE = re.compile(r"^[A-Za-z0-9_.,+-]+$")


# Bounds on a cluster description, far above any machine (the largest have ~10^4 nodes): a plan is refused in
# O(1) beyond them instead of laying out 10^8 nodes.
MAX_NODES = 100_000
MAX_CORES_PER_NODE = 100_000
MAX_MEM_PER_NODE_GB = 1e6


@dataclass(frozen=True)
class Cluster:
    """What the user asks for. ``ranks`` caps the number of feeder ranks (default: as many as fit)."""

    nodes: int
    cores_per_node: int
    mem_per_node_gb: float
    walltime: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    ranks: int | None = None
    network: str = "auto"  # auto: local on one node, ipv4 across nodes

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.cores_per_node < 1 or not self.mem_per_node_gb > 0:
            raise PlanError(f"cluster needs ≥ 1 node, ≥ 1 core and memory > 0, got {self.nodes} × "
                            f"{self.cores_per_node} cores × {self.mem_per_node_gb} GB")
        if self.nodes > MAX_NODES or self.cores_per_node > MAX_CORES_PER_NODE \
                or not self.mem_per_node_gb <= MAX_MEM_PER_NODE_GB:
            raise PlanError(f"cluster of {self.nodes} node(s) × {self.cores_per_node} cores × "
                            f"{self.mem_per_node_gb} GB is beyond any machine (at most {MAX_NODES} nodes, "
                            f"{MAX_CORES_PER_NODE} cores and {MAX_MEM_PER_NODE_GB} GB per node)")
        walltime_s(self.walltime)
        for key in ("partition", "account"):
            value = getattr(self, key)
            if value is not None and not _SLURM_WORD_RE.match(value):
                raise PlanError(f"--{key} {value!r}: only letters, digits and _.,+- are allowed")
        if self.ranks is not None and self.ranks < 1:
            raise PlanError(f"--ranks {self.ranks} must be at least 1")
        if self.network not in ("auto", "local", "ipv4"):
            raise PlanError(f"--network {self.network!r} must be auto, local or ipv4")


@dataclass(frozen=True)
class StudyShape:
    """What a plan needs to know about a study: counts, names, the feeder model and the coupling."""

    name: str
    case: str
    case_buses: int
    model: str
    coupling: str
    steps: int
    n_buses: int  # boundary buses
    n_feeders: int  # feeder federate instances (one per bus in scale mode)
    scale_mode: bool = False
    engine_mode: str = "auto"  # what the study asks: separate | shared | auto (the plan picks by memory)
    method: str = "gauss-seidel"  # the iterative coupling method (its own iteration law)
    start: str = "solved"  # [coupling] start: "solved" does one start solve per boundary bus on each rank
    operating_point: bool = False  # residual_load: starts at the case's operating point (cheaper re-solves)
    # "steady" (snapshot, QSTS: feeder ranks hold groups of clones) or "dynamic" (one feeder federate per rank,
    # an AGC federate beside the transmission's on node 0; steps are the T <-> D exchanges)
    kind: str = "steady"
    simulated_s: float = 0.0  # dynamic: the simulated time of the run (the TDS's work)

    @property
    def exchange_interval_s(self) -> float:
        """Dynamic: simulated time between two exchanges (the first exchange is at t = 0)."""
        return self.simulated_s / max(self.steps - 1, 1)

    @property
    def node0_federates(self) -> int:
        """Federates of node 0 besides the feeder ranks: the transmission's (and a dynamic study's AGC)."""
        return 2 if self.kind == "dynamic" else 1


@dataclass(frozen=True)
class NodePlan:
    index: int
    ranks: int
    first_rank: int
    feeders: int
    first_feeder: int
    federates: int  # federates on this node's sub-broker
    cores: int  # cores used: ranks + brokers (+ transmission on node 0)
    mem_mb: float


@dataclass(frozen=True)
class Estimate:
    feeders_per_rank: int  # the busiest rank
    feeder_s: float  # per iteration, busiest rank
    transmission_pf_s: float
    exchange_s: float
    iteration_s: float
    iterations: int  # assumed per step
    step_s: float
    steps: int
    startup_s: float
    total_s: float


@dataclass(frozen=True)
class Plan:
    study: StudyShape
    cluster: Cluster
    network: str
    ranks: int
    nodes: tuple[NodePlan, ...]
    brokers: tuple[dict, ...]
    ports: dict
    estimate: Estimate
    warnings: tuple[str, ...] = field(default=())
    engine_mode: str = "separate"  # what the ranks use (auto resolved)
    cost_model: str = "built in"  # where the cost figures came from
    usable_fraction: float = 0.9  # of a node's memory the plan may use

    @property
    def max_cores(self) -> int:
        return max(n.cores for n in self.nodes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(study=StudyShape(**d["study"]), cluster=Cluster(**d["cluster"]), network=d["network"],
                   ranks=d["ranks"], nodes=tuple(NodePlan(**n) for n in d["nodes"]),
                   brokers=tuple(d["brokers"]), ports=dict(d["ports"]), estimate=Estimate(**d["estimate"]),
                   warnings=tuple(d.get("warnings", ())), engine_mode=d.get("engine_mode", "separate"),
                   cost_model=d.get("cost_model", "built in"), usable_fraction=d.get("usable_fraction", 0.9))

    def node_of_rank(self, rank: int) -> NodePlan:
        """The node a feeder rank runs on (ranks are numbered node by node)."""
        for node in self.nodes:
            if node.first_rank <= rank < node.first_rank + node.ranks:
                return node
        raise PlanError(f"rank {rank} is not in the plan ({self.ranks} feeder ranks)")


def walltime_s(text: str) -> int:
    """Seconds of a SLURM walltime ``[D-]HH:MM:SS``."""
    m = _WALLTIME_RE.match(text)
    if not m:
        raise PlanError(f"--walltime {text!r}: expected HH:MM:SS or D-HH:MM:SS")
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def rank_slice(rank: int, n_feeders: int, n_ranks: int) -> tuple[int, int]:
    """[start, stop) of the feeders of ``rank``: contiguous runs whose sizes differ by at most one; the last
    ranks take the extra feeders (node 0, which also runs the transmission federate, the fewest)."""
    q, r = divmod(n_feeders, n_ranks)
    light = n_ranks - r  # ranks with q feeders; the r after them have q + 1
    start = rank * q + max(0, rank - light)
    return start, start + q + (1 if rank >= light else 0)


RESTART_PORT_SHIFT = 997  # a requeued job's next attempt moves this many slots on: its last brokers may linger


def broker_ports(ports: dict, job_id: int, restart: int = 0) -> tuple[int, int]:
    """(root port, sub-broker port) of a job: spread by job id so jobs sharing a node do not collide, and by
    ``SLURM_RESTART_COUNT`` so a requeued job does not meet its previous attempt's brokers."""
    root = ports["base"] + ((job_id + RESTART_PORT_SHIFT * restart) % ports["slots"]) * ports["stride"]
    return root, root + 2


def _spread(total: int, caps: list[int]) -> list[int]:
    """``total`` ranks over nodes as evenly as caps allow; leftovers go to nodes 1, 2, …, then node 0."""
    lo, hi = 0, max(caps)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(min(c, mid) for c in caps) >= total:
            hi = mid
        else:
            lo = mid + 1
    out = [min(c, max(lo - 1, 0)) for c in caps]
    extra = total - sum(out)
    for i in [*range(1, len(caps)), 0]:
        if extra and caps[i] >= lo and out[i] < caps[i]:
            out[i] += 1
            extra -= 1
    return out


def _free_cores(cluster: Cluster, shape: StudyShape) -> list[int]:
    c = cluster.cores_per_node
    return [c - BROKER_CORES - shape.node0_federates * TRANSMISSION_CORES] + [c - BROKER_CORES] * (cluster.nodes - 1)


def _nodes(shape: StudyShape, cluster: Cluster, per_node_cap: int, model: CostModel,
           engine_mode: str) -> tuple[list[NodePlan], int]:
    """Node plans with at most ``per_node_cap`` ranks per node; returns (nodes, ranks)."""
    caps = [max(0, min(f, per_node_cap)) for f in _free_cores(cluster, shape)]
    total = min(shape.n_feeders, cluster.ranks or sum(caps), sum(caps))
    ranks = _spread(total, caps)
    tcost = model.transmission(shape.case_buses, shape.n_feeders)
    out, first = [], 0
    for i, r in enumerate(ranks):
        start = rank_slice(first, shape.n_feeders, total)[0] if r else 0
        stop = rank_slice(first + r - 1, shape.n_feeders, total)[1] if r else 0
        feeders = stop - start
        handles = 2 * feeders + (shape.n_buses + shape.n_feeders if i == 0 else 0)
        mem = model.ranks_mb(shape.model, engine_mode, r, feeders) + model.broker_mb(handles)
        if i == 0:
            mem += tcost.rss_mb + model.broker_mb(2 * shape.n_feeders + shape.n_buses)
        node0 = shape.node0_federates if i == 0 else 0
        out.append(NodePlan(index=i, ranks=r, first_rank=first, feeders=feeders, first_feeder=start,
                            federates=r + node0, cores=r + BROKER_CORES + node0 * TRANSMISSION_CORES,
                            mem_mb=round(mem, 1)))
        first += r
    return out, total


def _fits(nodes: list[NodePlan], cluster: Cluster, model: CostModel) -> NodePlan | None:
    """The first node over its usable memory, or None."""
    usable = cluster.mem_per_node_gb * 1024 * model.usable_memory_fraction
    return next((n for n in nodes if n.mem_mb > usable), None)


def _place_mode(shape: StudyShape, cluster: Cluster, model: CostModel, mode: str) -> tuple[list[NodePlan], int]:
    """The most ranks per node that fit in memory (binary search: memory grows with ranks per node)."""
    lo, hi = 1, max(_free_cores(cluster, shape))
    if _fits(_nodes(shape, cluster, lo, model, mode)[0], cluster, model) is not None:
        raise _memory_error(shape, cluster, model, mode)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(_nodes(shape, cluster, mid, model, mode)[0], cluster, model) is None:
            lo = mid
        else:
            hi = mid - 1
    return _nodes(shape, cluster, lo, model, mode)


def _place(shape: StudyShape, cluster: Cluster, model: CostModel) -> tuple[list[NodePlan], int, str]:
    """Placement and engine mode. ``auto`` keeps one engine per clone while that fits with as many ranks as
    shared engines would allow, else shares one engine per rank."""
    if shape.engine_mode in ("separate", "shared"):
        return (*_place_mode(shape, cluster, model, shape.engine_mode), shape.engine_mode)
    shared = _place_mode(shape, cluster, model, "shared")
    try:
        separate = _place_mode(shape, cluster, model, "separate")
    except PlanError:
        return (*shared, "shared")
    return (*separate, "separate") if separate[1] >= shared[1] else (*shared, "shared")


def _memory_error(shape: StudyShape, cluster: Cluster, model: CostModel, mode: str) -> PlanError:
    nodes, _ = _nodes(shape, cluster, 1, model, mode)
    worst = _fits(nodes, cluster, model)
    usable_gb = cluster.mem_per_node_gb * model.usable_memory_fraction

    def fits_on(n: int) -> bool:
        return _fits(_nodes(shape, replace(cluster, nodes=n), 1, model, mode)[0], cluster, model) is None

    lo, hi = cluster.nodes, cluster.nodes
    while hi < 10**7 and not fits_on(hi):
        lo, hi = hi, hi * 2
    while lo < hi:  # the fewest nodes at which one rank per node fits
        mid = (lo + hi) // 2
        if fits_on(mid):
            hi = mid
        else:
            lo = mid + 1
    need = f"needs at least {hi} nodes of {cluster.mem_per_node_gb:g} GB" if hi < 10**7 else "cannot fit"
    return PlanError(f"{shape.name}: does not fit in memory: node {worst.index} needs "
                     f"{worst.mem_mb / 1024:.1f} GB > {usable_gb:.1f} GB usable "
                     f"({shape.n_feeders} {shape.model} feeders, {mode} engines, on {cluster.nodes} node(s)); {need}")


def _check_cores(shape: StudyShape, cluster: Cluster) -> None:
    free = _free_cores(cluster, shape)
    node0 = "the transmission federate" + (" and the AGC federate" if shape.kind == "dynamic" else "")
    if free[0] < 0:
        raise PlanError(f"--cores-per-node {cluster.cores_per_node}: node 0 needs {BROKER_CORES} core for the "
                        f"brokers and {shape.node0_federates * TRANSMISSION_CORES} for {node0}")
    total = sum(free)
    if total < 1:
        raise PlanError(f"{cluster.nodes} node(s) × {cluster.cores_per_node} cores leave no core for a feeder "
                        f"rank (each node keeps {BROKER_CORES} for its broker, node 0 more for {node0})")
    if cluster.ranks is not None and cluster.ranks > total:
        raise PlanError(f"over-subscribed: {cluster.ranks} feeder ranks need {cluster.ranks} cores but "
                        f"{cluster.nodes} node(s) × {cluster.cores_per_node} cores leave {total} (each node keeps "
                        f"{BROKER_CORES} for its broker, node 0 more for {node0})")
    if shape.kind == "dynamic" and total < shape.n_feeders:
        raise PlanError(f"{shape.name}: its {shape.n_feeders} feeder federates need a core each, {cluster.nodes} "
                        f"node(s) × {cluster.cores_per_node} cores leave {total} (each node keeps {BROKER_CORES} "
                        f"for its broker, node 0 more for {node0}): ask for more nodes or cores")


def make_plan(shape: StudyShape, cluster: Cluster, model: CostModel = DEFAULT) -> Plan:
    """Place a study on a cluster (pure); raises :class:`PlanError` when it cannot fit."""
    if shape.n_feeders < 1:
        raise PlanError(f"{shape.name}: no feeders to place")
    if cluster.nodes > shape.n_feeders + 1:  # every node but node 0 needs a feeder rank of its own
        raise PlanError(f"--nodes {cluster.nodes}: the study's {shape.n_feeders} feeders can use at most "
                        f"{shape.n_feeders + 1} nodes (one feeder rank on each node besides node 0)")
    _check_cores(shape, cluster)
    warnings = []
    if cluster.ranks is not None and cluster.ranks > shape.n_feeders:
        warnings.append(f"--ranks {cluster.ranks} > {shape.n_feeders} feeders: using {shape.n_feeders} ranks")
    if shape.engine_mode not in ("auto", "separate", "shared"):
        raise PlanError(f"engine mode {shape.engine_mode!r} must be auto, separate or shared")
    nodes, ranks, engine_mode = _place(shape, cluster, model)
    idle = [n.index for n in nodes if n.index > 0 and n.ranks == 0]
    if idle:
        used = cluster.nodes - len(idle)
        raise PlanError(f"{cluster.nodes} nodes for {ranks} feeder rank(s): node(s) {', '.join(map(str, idle[:5]))}"
                        f"{'…' if len(idle) > 5 else ''} would idle; use --nodes {used}")
    _, measured = model.feeder(shape.model)
    if not measured:
        warnings.append(f"no measured costs for feeder model {shape.model!r}: planned as {model.fallback_model}")
    if ranks < min(shape.n_feeders, sum(_free_cores(cluster, shape)), cluster.ranks or shape.n_feeders):
        warnings.append(f"memory limits the plan to {ranks} feeder ranks (cores allow more)")
    if shape.kind == "dynamic" and ranks != shape.n_feeders:
        raise PlanError(f"{shape.name}: a dynamic study runs one feeder federate per rank ({shape.n_feeders}); "
                        f"the plan could place {ranks} (memory or --ranks {cluster.ranks})")
    tcost = model.transmission(shape.case_buses, shape.n_feeders)
    k_max = -(-shape.n_feeders // ranks)
    feeder_s = k_max * model.solve_s(shape.model, engine_mode, operating_point=shape.operating_point)
    exchange = model.exchange_s(shape.n_feeders)
    iteration_s = model.iteration_s(shape.model, engine_mode, k_max, shape.n_feeders, shape.case_buses,
                                    shape.operating_point)
    iterations = model.iterations_for(shape.coupling, shape.n_buses, shape.method)
    step_s = tcost.pf_s + iterations * iteration_s
    before_s, first_extra_s = model.startup_s(shape.model, engine_mode, shape.start, k_max,
                                              model.buses_per_rank(shape.n_buses, ranks, k_max),
                                              shape.case_buses, shape.n_feeders)
    startup_s = before_s + first_extra_s  # a plan's start-up includes a first iteration's cold solves
    if shape.kind == "dynamic":  # an exchange: the TDS over its interval, then the feeders' answers
        iterations = 1
        tcost = replace(tcost, pf_s=model.tds_s_per_sim_s(shape.case_buses) * shape.exchange_interval_s)
        iteration_s = step_s = tcost.pf_s + feeder_s + exchange
        startup_s = before_s + model.solve_s(shape.model, engine_mode, first=True)
    total_s = startup_s + shape.steps * step_s
    if total_s > walltime_s(cluster.walltime):
        warnings.append(f"predicted {_hms(total_s)} exceeds --walltime {cluster.walltime}")
    network = cluster.network if cluster.network != "auto" else ("local" if cluster.nodes == 1 else "ipv4")
    if network == "local" and cluster.nodes > 1:
        raise PlanError("--network local binds loopback only and cannot span nodes: use ipv4 (or auto)")
    brokers = ({"name": "root", "node": 0, "federates": ranks + 1, "sub_brokers": len(nodes), "parent": None},
               *({"name": f"sub{n.index}", "node": n.index, "federates": n.federates, "sub_brokers": 0,
                  "parent": "root"} for n in nodes))
    r6 = lambda x: float(f"{x:.6g}")  # noqa: E731 - stable, readable numbers in plan.json
    est = Estimate(feeders_per_rank=k_max, feeder_s=r6(feeder_s), transmission_pf_s=r6(tcost.pf_s),
                   exchange_s=r6(exchange), iteration_s=r6(iteration_s), iterations=iterations, step_s=r6(step_s),
                   steps=shape.steps, startup_s=r6(startup_s), total_s=r6(total_s))
    return Plan(study=shape, cluster=cluster, network=network, ranks=ranks, nodes=tuple(nodes), brokers=brokers,
                ports={"base": PORT_BASE, "slots": PORT_SLOTS, "stride": PORT_STRIDE}, estimate=est,
                warnings=tuple(warnings), engine_mode=engine_mode, cost_model=model.source,
                usable_fraction=model.usable_memory_fraction)


def _hms(seconds: float) -> str:
    s = int(math.ceil(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def study_shape(study: Study, bmap: BoundaryMap | None = None) -> StudyShape:
    """Counts of a :class:`hpcsim.study.Study` (reads its case and boundary map)."""
    # numpy only when a study is planned: hpc.plan loads with `hpcsim plan --help`
    from hpcsim.cases import case_label, read_matpower  # noqa: PLC0415
    from hpcsim.federation.layout import boundary_map_of  # noqa: PLC0415

    if study.dynamics is not None:
        return dynamic_shape(study)
    bmap = bmap or boundary_map_of(study)
    model = study.feeder if not str(study.feeder).endswith(".dss") else Path(study.feeder).stem
    return StudyShape(name=study.name, case=case_label(study.case), case_buses=len(read_matpower(study.case).bus),
                      model=model, coupling=study.coupling, steps=study.n_steps, n_buses=bmap.n_buses,
                      n_feeders=bmap.n_buses if study.scale_mode else bmap.n_feeders, scale_mode=study.scale_mode,
                      engine_mode=study.engine_mode, method=study.method, start=study.start,
                      operating_point=study.keeps_residual)


def dynamic_shape(study: Study) -> StudyShape:
    """Counts of a dynamic study: one feeder federate per feeder (planned as the study's largest feeder model),
    one step per T <-> D exchange, the case's buses from its ANDES power flow."""
    from hpcsim.cases import case_file  # noqa: PLC0415 - numpy (see above)
    from hpcsim.transmission.dynamic import read_case  # noqa: PLC0415 - ANDES, only for dynamic studies

    spec = study.dynamics
    names = [name for _, name in spec.feeders]
    model = max(names, key=lambda n: DEFAULT.feeder(n)[0].rss_mb)
    return StudyShape(name=study.name, case=case_file(study.case).stem,
                      case_buses=len(read_case(study.case)["v_pu"]), model=model, coupling="dynamic", steps=spec.exchanges, n_buses=len(names),
                      n_feeders=len(names), engine_mode="separate", start="case", kind="dynamic",
                      simulated_s=float(spec.stop_s))


def plan_study(study: Study, cluster: Cluster, model: CostModel = DEFAULT) -> Plan:
    """Read the study's case and boundary map, then :func:`make_plan`."""
    return make_plan(study_shape(study), cluster, model)
