"""HELICS brokers as real processes: a root broker and optional sub-brokers (a broker hierarchy).

The PyPI wheel's console script ``helics_broker`` is a Python wrapper around the real binary; killing the
wrapper can leave the broker running, so hpcsim starts the binary itself.
"""

from __future__ import annotations

import logging
import random
import socket
from dataclasses import dataclass
from pathlib import Path

from hpcsim.errors import FederateError

log = logging.getLogger(__name__)


def broker_binary() -> Path:
    import helics

    path = Path(helics.__file__).parent / "install" / "bin" / "helics_broker"
    if not path.is_file():
        raise FederateError(f"HELICS broker binary not found at {path} (is the helics wheel installed?)")
    return path


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(n: int = 2, host: str = "127.0.0.1", low: int = 20000) -> int:
    """A port P such that P..P+n-1 are free on ``host`` now (ZMQ brokers use P and P+1).

    Chosen at random below the kernel's ephemeral range, so outgoing connections (which take ephemeral
    ports) cannot grab it between this check and the broker binding it.
    """
    high = max(low + 1000, _ephemeral_start() - n)
    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(low, high)
        socks = []
        try:
            for q in range(p, p + n):
                s = socket.socket()
                s.bind((host, q))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise FederateError(f"no block of {n} free ports found on {host} in {low}..{high}")


@dataclass(frozen=True)
class BrokerSpec:
    """One broker of the hierarchy. ``parent`` is the root's address for a sub-broker, ``None`` for the root."""

    name: str
    federates: int
    port: int
    host: str = "127.0.0.1"
    sub_brokers: int = 0
    network: str = "local"
    parent: str | None = None
    core_type: str = "zmq"

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def argv(self, binary: str | Path | None = None, loglevel: str = "warning") -> list[str]:
        """Command line of this broker (``helics_broker -t zmq -f N ...``)."""
        argv = [str(binary or broker_binary()), "-t", self.core_type, "-f", str(self.federates),
                f"--name={self.name}", f"--loglevel={loglevel}"]
        argv.append(f"--{self.network}")
        if self.parent is None:
            argv.append(f"--port={self.port}")
            if self.sub_brokers:
                argv.append(f"--subbrokers={self.sub_brokers}")
        else:
            argv += [f"--broker_address={self.parent}", f"--localport={self.port}"]
        return argv


def core_init_string(broker_address: str, network: str = "local") -> str:
    """Core init string for a federate connecting to ``broker_address``; its own port is chosen by the OS."""
    return f"--federates=1 --broker_address={broker_address} --localport=os --{network}"


if __name__ == "__main__":  # `python -m hpcsim.federation.brokers`: the broker binary (job scripts use it)
    print(broker_binary())
