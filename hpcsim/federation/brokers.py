"""HELICS brokers as real processes: a root broker and optional sub-brokers (a broker hierarchy).

The PyPI wheel's console script ``helics_broker`` is a Python wrapper around the real binary; killing the
wrapper can leave the broker running, so hpcsim starts the binary itself.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from hpcsim.errors import FederateError

log = logging.getLogger(__name__)


def broker_binary() -> Path:
    import helics  # noqa: PLC0415

    path = Path(helics.__file__).parent / "install" / "bin" / "helics_broker"
    if not path.is_file():
        raise FederateError(f"HELICS broker binary not found at {path} (is the helics wheel installed?)")
    return path


def free_port_block(n: int = 2, host: str = "127.0.0.1", start: int = 20000, stop: int = 60000) -> int:
    """A port P such that P..P+n-1 are all free on ``host`` now (ZMQ brokers use P and P+1)."""
    probe = socket.socket()
    probe.bind((host, 0))
    base = probe.getsockname()[1]
    probe.close()
    candidates = [base] + list(range(start, stop, 16))
    for p in candidates:
        if p + n >= 65535:
            continue
        socks = []
        try:
            for q in range(p, p + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, q))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise FederateError(f"no block of {n} free ports found on {host}")


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
