"""The long fuzz run (issue 8 §3): >= 1 M inputs over the pure targets, outside CI.

Usage::

    python -m tests.fuzz.longrun --inputs 1000000               # atheris if installed
    python -m tests.fuzz.longrun --inputs 200000 --engine random --targets mi,tcp
    python -m tests.fuzz.longrun --inputs 1000000 --time-limit 3600 --out /tmp/fuzz-out

Targets (see :mod:`tests.fuzz.targets` for each oracle): ``socket`` (parse_socket,
parse_broker_id, check_command), ``config`` (load_config_text), ``mi`` (the MI dispatcher on a
real EventKafka whose brokers are unreachable), ``notification`` (parse_notification),
``udp`` (the UDP listener's handler) and ``tcp`` (the TCP listener's protocol, the stream cut
at random points). ``--inputs`` is the total, split evenly over the targets.

Engines:

* ``atheris`` (coverage-guided libFuzzer, ``pip install atheris``): one worker process per
  target, seeded with generated inputs and a token dictionary; libFuzzer's RSS limit of 2 GiB
  (unbounded memory is a failure) and per-input timeout of 30 s;
* ``random``: the grammar generators of :mod:`tests.fuzz.targets` plus byte-level mutations of
  earlier inputs, all targets in this process.

Both: an input slower than 10 s is run again at once; slow again is a *hang* (a failure),
fast is a *host stall* (listed: this machine may be shared). After 5 s every thread's stack
is dumped to ``<out>/<target>-slow-input-stacks.txt``. The peak RSS is printed per target, and
for ``mi`` the number of producer lanes every 20 000 inputs (bounded state).

Every oracle failure is a failure: counted by its message, its first inputs saved under
``--out`` (``<target>-NNN-M.bin``, the input; ``.txt``, the message and traceback) and the
first one printed. Exit status: 0, or 1 when any failure (or hang) was found.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = ("socket", "config", "mi", "notification", "udp", "tcp")
MAX_LEN = {"socket": 2048, "config": 8192, "mi": 16384, "notification": 8192, "udp": 65507}
MAX_LEN["tcp"] = 65536
HANG_SECONDS = 10.0
STACK_DUMP_SECONDS = 5.0
SAVE_PER_SIGNATURE = 5
MI_ENV_RECYCLE = 20_000  # fresh EventKafka every N MI inputs (bounded subscriptions, queues)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Runner:
    """Runs one target on inputs given as bytes (generated, mutated, or from libFuzzer)."""

    def __init__(self, target: str, out: Path) -> None:
        from . import targets as T

        self.T = T
        self.target = target
        self.out = out
        self.count = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.first_failure: str | None = None
        self.hangs = 0
        self.stalls: list[float] = []
        self.lanes_at_recycle: list[int] = []
        self.slowest = 0.0
        self.env: Any = None
        self._stacks: Any = None
        self.commands: dict[str, list[tuple[str, ...]]] = {}
        self.started = time.monotonic()
        self.rss_start = _rss_mb()
        self._restore_logs = T.quiet_logs()

    # -- generation -------------------------------------------------------------------------

    def generate(self, r: random.Random) -> bytes:
        T = self.T
        if self.target == "socket":
            return T.gen_socket(r).encode("utf-8", "surrogateescape")
        if self.target == "config":
            return T.gen_config(r)[0].encode()
        if self.target == "mi":
            return T.gen_mi_body(r, self._commands())
        if self.target == "tcp":
            data, cuts = T.gen_stream(r)
            return bytes([len(cuts) % 256, r.randrange(256)]) + data
        return T.gen_notification(r)

    def tokens(self) -> list[bytes]:
        return self.T.TOKENS[{"socket": "socket", "config": "config"}.get(self.target, "json")]

    def _commands(self) -> dict[str, list[tuple[str, ...]]]:
        if not self.commands:
            self.commands = self.T.mi_commands(self._env().dispatcher)
        return self.commands

    def _env(self) -> Any:
        if self.env is None:
            self.env = self.T.MIEnv()
        return self.env

    # -- one input --------------------------------------------------------------------------

    def one(self, data: bytes) -> None:
        T = self.T
        self.count += 1
        if self.target == "socket":
            text = data.decode("utf-8", "surrogateescape")
            call: Callable[[], str] = lambda: T.socket_target(text)  # noqa: E731
        elif self.target == "config":
            text = data.decode("utf-8", "replace")  # what load_config decodes from a file
            secrets = T._LOOSE_SECRET.findall(text) + _TOKEN_SECRET(text)
            call = lambda: T.config_target(text, secrets)  # noqa: E731
        elif self.target == "mi":
            env = self._env()
            if env.count >= MI_ENV_RECYCLE:
                # Bounded state: lanes per live subscriber, not per subscription ever made.
                self.lanes_at_recycle.append(len(env.ek.pool.lanes))
                env.close()
                self.env = None
                env = self._env()
            call = lambda: T.mi_target(env, data)  # noqa: E731
        elif self.target == "notification":
            call = lambda: T.notification_target(data)  # noqa: E731
        elif self.target == "udp":
            call = lambda: T.udp_target(data)  # noqa: E731
        else:
            stream = data[2:]
            rnd = random.Random(data[:2])
            n = data[0] if data else 0
            cuts = [rnd.randrange(len(stream) + 1) for _ in range(n % 9)]
            call = lambda: T.stream_target(stream, cuts, 4096)  # noqa: E731
        t0 = time.monotonic()
        # A stuck input dumps every thread's stack (even from native code holding the GIL).
        faulthandler.dump_traceback_later(STACK_DUMP_SECONDS, file=self._stack_file())
        try:
            label = call()
        except T.FuzzFailure as exc:
            self._fail(f"{exc}"[:120], data, exc)
            label = "FAILURE"
        except Exception as exc:  # a bug of the harness itself: a failure too
            self._fail(f"harness {type(exc).__name__}: {exc}"[:120], data, exc)
            label = "FAILURE"
        faulthandler.cancel_dump_traceback_later()
        took = time.monotonic() - t0
        self.slowest = max(self.slowest, took)
        if took > HANG_SECONDS:
            # Run it again at once, in the same state: slow again is a hang; fast is a stall
            # of the host (this machine is shared), counted apart.
            t1 = time.monotonic()
            with contextlib.suppress(Exception):
                call()
            again = time.monotonic() - t1
            if again > HANG_SECONDS:
                self.hangs += 1
                self._fail(f"hang: {took:.1f} s, then {again:.1f} s again", data, None)
            else:
                self.stalls.append(round(took, 1))
                self._save(f"stall-{len(self.stalls)}", data, f"{took:.1f} s, rerun {again:.3f} s")
        self.outcomes[label] += 1

    def _stack_file(self) -> Any:
        if self._stacks is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._stacks = (self.out / f"{self.target}-slow-input-stacks.txt").open("a")
        return self._stacks

    def _fail(self, signature: str, data: bytes, exc: BaseException | None) -> None:
        self.failures[signature] += 1
        if self.failures[signature] > SAVE_PER_SIGNATURE:
            return
        detail = "".join(traceback.format_exception(exc)) if exc is not None else ""
        name = f"{len(self.failures):03d}-{self.failures[signature]}"
        self._save(name, data, f"{signature}\n\n{detail}")
        if self.first_failure is None:
            shown = repr(data[:300]) + (f" ... ({len(data)} bytes)" if len(data) > 300 else "")
            where = self.out / f"{self.target}-{name}.bin"
            self.first_failure = f"{signature}\n  input: {shown}\n  saved: {where}"

    def _save(self, name: str, data: bytes, text: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{self.target}-{name}.bin").write_bytes(data)
        (self.out / f"{self.target}-{name}.txt").write_text(text)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
        if self._stacks is not None:
            self._stacks.close()
            self._stacks = None
        self._restore_logs()

    def stats(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "inputs": self.count,
            "seconds": round(time.monotonic() - self.started, 1),
            "outcomes": dict(self.outcomes.most_common()),
            "failures": dict(self.failures),
            **({"first_failure": self.first_failure} if self.first_failure else {}),
            "hangs": self.hangs,
            "stalls": self.stalls,
            **({"mi_lanes_at_recycle": self.lanes_at_recycle} if self.lanes_at_recycle else {}),
            "slowest_s": round(self.slowest, 3),
            "rss_start_mb": round(self.rss_start),
            "rss_max_mb": round(_rss_mb()),
        }


def _TOKEN_SECRET(text: str) -> list[str]:
    import re

    return re.findall(r'(?m)^\s*token\s*=\s*"([A-Za-z0-9]{6,})"', text)


# --------------------------------------------------------------------------------------------
# random engine


def run_random(target: str, n: int, seed: int, out: Path, deadline: float) -> dict[str, Any]:
    runner = Runner(target, out)
    r = random.Random(f"{seed}-{target}")
    corpus: list[bytes] = []
    seen: set[str] = set()
    tokens = runner.tokens()
    try:
        for i in range(n):
            if i % 1000 == 0 and time.monotonic() > deadline:
                break
            if not corpus or r.random() < 0.5:
                data = runner.generate(r)
            else:
                other = r.choice(corpus) if r.random() < 0.2 else b""
                data = runner.T.mutate(r, r.choice(corpus), tokens, other)
                data = data[: MAX_LEN[target]] if r.random() < 0.9 else data
            before = len(runner.outcomes)
            runner.one(data)
            label = next(reversed(runner.outcomes)) if len(runner.outcomes) > before else None
            # Keep a small, varied corpus: new outcome labels always, the rest sometimes.
            if label is not None and label not in seen:
                seen.add(label)
                corpus.append(data)
            elif len(corpus) < 512 or r.random() < 0.02:
                if len(corpus) >= 512:
                    corpus[r.randrange(len(corpus))] = data
                else:
                    corpus.append(data)
    finally:
        runner.close()
    return runner.stats()


# --------------------------------------------------------------------------------------------
# atheris engine (one worker process per target)


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def worker(target: str, n: int, seed: int, out: Path, stats_path: Path) -> None:
    """Runs inside its own process: atheris.Fuzz never returns (libFuzzer exits)."""
    import atheris

    with atheris.instrument_imports(include=["event_kafka"]):
        import event_kafka.cjson
        import event_kafka.kafka_socket
        import event_kafka.service.config
        import event_kafka.service.ingest
        import event_kafka.service.mi  # noqa: F401

    runner = Runner(target, out)
    work = Path(tempfile.mkdtemp(prefix=f"ek-fuzz-{target}-"))
    corpus = work / "corpus"
    corpus.mkdir()
    r = random.Random(f"{seed}-{target}")
    for i in range(300):
        (corpus / f"seed{i:04d}").write_bytes(runner.generate(r)[: MAX_LEN[target]])
    dictionary = work / "tokens.dict"
    dictionary.write_text("".join(f'"{_dict_escape(t)}"\n' for t in runner.tokens()))

    def dump() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(runner.stats()))
        tmp.replace(stats_path)

    def one(data: bytes) -> None:
        runner.one(data)
        if runner.count % 500 == 0 or runner.count >= n:
            dump()

    argv = [
        sys.argv[0],
        f"-runs={n}",
        f"-seed={seed}",
        f"-max_len={MAX_LEN[target]}",
        f"-timeout={int(HANG_SECONDS) * 3}",  # ours reruns a slow input first
        "-rss_limit_mb=2048",
        f"-dict={dictionary}",
        f"-artifact_prefix={out}/{target}-",
        "-print_final_stats=1",
        str(corpus),
    ]
    out.mkdir(parents=True, exist_ok=True)
    atheris.Setup(argv, one)
    try:
        atheris.Fuzz()
    finally:
        dump()
        shutil.rmtree(work, ignore_errors=True)


def _dict_escape(token: bytes) -> str:
    """A libFuzzer dictionary entry: printable ASCII as is, the rest as \\xNN."""
    return "".join(
        chr(b) if 32 <= b < 127 and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token
    )


def run_atheris(target: str, n: int, seed: int, out: Path, deadline: float) -> dict[str, Any]:
    """Run the target's worker until ``n`` inputs ran (a worker libFuzzer stopped on a
    timeout or crash is started again, with the next seed, for the rest)."""
    total: dict[str, Any] = {"target": target, "inputs": 0, "seconds": 0.0, "workers": 0}
    while total["inputs"] < n and time.monotonic() < deadline and total["workers"] < 10:
        stats = _atheris_worker(target, n - total["inputs"], seed + total["workers"], out, deadline)
        total["workers"] += 1
        _merge(total, stats)
        if stats.get("inputs", 0) == 0:
            break  # it cannot even start: do not loop
    return total


def _merge(total: dict[str, Any], stats: dict[str, Any]) -> None:
    """Add one worker's statistics to the target's."""
    for key, value in stats.items():
        if key in ("inputs", "hangs"):
            total[key] = total.get(key, 0) + value
        elif key == "seconds":
            total[key] = round(total.get(key, 0.0) + value, 1)
        elif key in ("slowest_s", "rss_max_mb"):
            total[key] = max(total.get(key, 0), value)
        elif key in ("rss_start_mb", "first_failure"):
            total.setdefault(key, value)
        elif key == "libfuzzer":
            total[key] = value
        elif isinstance(value, dict):
            merged = collections.Counter(total.get(key, {}))
            merged.update(value)
            total[key] = dict(merged.most_common())
        elif isinstance(value, list):
            total[key] = total.get(key, []) + value
        else:
            total[key] = value


def _atheris_worker(target: str, n: int, seed: int, out: Path, deadline: float) -> dict[str, Any]:
    stats_path = out / f"{target}.stats.json"
    out.mkdir(parents=True, exist_ok=True)
    stats_path.unlink(missing_ok=True)
    log_path = out / f"{target}.libfuzzer.log"
    cmd = [sys.executable, "-m", "tests.fuzz.longrun", "--worker", target]
    cmd += ["--inputs", str(n), "--seed", str(seed), "--out", str(out)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=Path(__file__).parents[2])
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    stats: dict[str, Any] = {"target": target, "inputs": 0}
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
    tail = log_path.read_text(errors="replace").splitlines()[-40:]
    stats["libfuzzer"] = [ln for ln in tail if ln.startswith(("stat::", "==", "Done", "#"))][-6:]
    if proc.returncode not in (0, None, -15):
        # A crash, a timeout (hang) or the RSS limit: libFuzzer saved the input (artifacts).
        stats.setdefault("failures", {})[f"libFuzzer exit {proc.returncode}"] = 1
    return stats


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.longrun", description=__doc__)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total over all targets")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ek-fuzz")
    parser.add_argument("--time-limit", type=float, default=6 * 3600, help="seconds, overall")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once (atheris)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(
            args.worker, args.inputs, args.seed, args.out, args.out / f"{args.worker}.stats.json"
        )
        return 0

    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "random"
    per_target = -(-args.inputs // len(targets))
    deadline = time.monotonic() + args.time_limit
    print(f"engine {engine}, {per_target} inputs for each of {', '.join(targets)}", flush=True)
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    if engine == "atheris" and args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(run_atheris, t, per_target, args.seed, args.out, deadline)
                for t in targets
            ]
            for fut in futures:
                results.append(fut.result())
                _print(results[-1])
    else:
        for target in targets:
            run = run_atheris if engine == "atheris" else run_random
            results.append(run(target, per_target, args.seed, args.out, deadline))
            _print(results[-1])
    total = sum(r.get("inputs", 0) for r in results)
    failed = sum(sum(r.get("failures", {}).values()) for r in results)
    took = time.monotonic() - t0
    print(
        f"\nTOTAL {total} inputs in {took:.0f} s ({total / max(took, 1e-9):.0f}/s), engine {engine}"
    )
    print(f"failures: {failed}" + (f" (inputs saved in {args.out})" if failed else ""))
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def _print(stats: dict[str, Any]) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in list(stats.get("outcomes", {}).items())[:8])
    secs = stats.get("seconds", 0) or 1e-9
    print(
        f"\n{stats['target']:>12}: {stats.get('inputs', 0)} inputs in {secs} s "
        f"({stats.get('inputs', 0) / secs:.0f}/s), rss {stats.get('rss_start_mb')} -> "
        f"{stats.get('rss_max_mb')} MB, slowest {stats.get('slowest_s')} s, "
        f"hangs {stats.get('hangs', 0)}, host stalls {stats.get('stalls', [])}",
        flush=True,
    )
    print(f"{'':>14}outcomes: {outcomes}")
    if stats.get("mi_lanes_at_recycle"):
        print(
            f"{'':>14}producer lanes every {MI_ENV_RECYCLE} MI inputs: "
            f"{stats['mi_lanes_at_recycle']}"
        )
    if stats.get("failures"):
        print(f"{'':>14}FAILURES: {stats['failures']}")
        if stats.get("first_failure"):
            print(f"{'':>14}first: {stats['first_failure']}")
    for line in stats.get("libfuzzer", []):
        print(f"{'':>14}{line}")
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
