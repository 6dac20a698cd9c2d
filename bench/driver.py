"""End-to-end benchmark: Sluice and its peers moving the same records into Kafka, in one run,
against the local brokers. Started by `bench/run.sh` (which builds, installs and picks the
sizes); see bench/README.md for what is measured and how.

For each source (Pulsar, Pub/Sub) and value size, each contender gets its own source topic
pre-loaded with N keyed records and its own Kafka topic. Measured per contender:
  - throughput: records / time from the first record landing in Kafka until all N have
    (the sum of the topic's high watermarks, polled every 50 ms; start-up is reported apart),
  - CPU seconds (user + system, child processes included) until then, and peak RSS,
  - latency at a fixed offered rate: probes published one by one at RATE/s for SECONDS,
    each stamped with the wall clock at the send call, read back by a Kafka consumer tailing
    the topic: latency = time the consumer got it - stamp (publish -> readable in Kafka),
  - afterwards the whole topic is read back: every pre-loaded record must be there
    (duplicates are counted, not failed: every contender is at-least-once).
Ceilings measured the same way: librdkafka's own produce rate into Apache Kafka (same producer
settings, same records, the same headers Sluice writes for that source), and the source's own
consume rate (Pulsar: the C++ client; Pub/Sub: Google's client's streaming pull).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import flamegraph  # noqa: E402
import workload  # noqa: E402
from processes import Watched, wait_for  # noqa: E402
from workload import Brokers  # noqa: E402

BENCH_DIR = Path(__file__).parent
PARTITIONS = 4
CONTENDERS = {
    "pulsar": ["sluice-passthrough", "sluice-identity", "sluice-redact", "python-bridge"],
    "pubsub": ["sluice-passthrough", "sluice-identity", "sluice-redact", "quixstreams", "quixstreams-lease-fix"],
}


@dataclass
class Row:
    name: str
    kind: str  # "contender" or "ceiling"
    records: int
    rate: float  # records/s
    startup_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_probes: int | None = None
    latency_received: int | None = None
    delivered: int | None = None  # pre-loaded records found in Kafka, duplicates included
    distinct: int | None = None
    stalled_at: int | None = None  # a peer that stopped moving: how many records it had moved
    # records/s of distinct records: `rate` x distinct / delivered (a contender that writes
    # duplicates lands records faster than it moves distinct ones)
    distinct_rate: float | None = None


@dataclass
class Group:
    source: str
    size: int
    records: int
    rows: list[Row] = field(default_factory=list)


class Progress:
    """One status line, rewritten in place on a terminal; every 5 s a new line otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self.prefix = ""

    def stage(self, text: str) -> None:
        self.prefix = text
        self._emit(text, force=True)

    def update(self, text: str) -> None:
        self._emit(f"{self.prefix}: {text}")

    def _emit(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + text[:150])
            sys.stderr.flush()
        elif force or now - self._last >= 5:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self._last = now

    def done(self, text: str) -> None:
        sys.stderr.write(("\r\033[K" if self.tty else "") + f"{self.prefix}: {text}\n")
        sys.stderr.flush()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.brokers = Brokers(
            kafka=os.environ["SLUICE_KAFKA_BROKERS"],
            pulsar_url=os.environ["SLUICE_PULSAR_URL"],
            pubsub=os.environ["PUBSUB_EMULATOR_HOST"],
        )
        self.run_id = time.strftime("%Y%m%d%H%M%S")
        self.work = Path(args.out) / "work" if args.keep_work else Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.progress = Progress()
        self.python = sys.executable

    def name(self, *parts: object) -> str:
        return "-".join(["bench", self.run_id, *map(str, parts)])

    # ----------------------------------------------------------------------------------------
    # Source side

    def prepare_source(self, source: str, tag: str, count: int, size: int) -> dict:
        """A fresh source topic holding `count` records; returns where a reader finds them."""

        def preloading(done: int) -> None:
            self.progress.update(f"pre-loading {done:,}/{count:,} records")

        if source == "pulsar":
            topic = f"persistent://public/default/{self.name(tag)}"
            workload.preload_pulsar(self.brokers.pulsar_url, topic, count, size, preloading)
            return {"topic": topic, "subscription": "bench"}
        topic = self.name(tag)
        workload.create_pubsub_topic(topic, [f"{topic}-sub"])
        workload.preload_pubsub(topic, count, size, preloading)
        return {"topic": topic, "subscription": f"{topic}-sub"}

    def probe(self, source: str, where: dict, size: int):
        if source == "pulsar":
            return workload.PulsarProbe(self.brokers.pulsar_url, where["topic"], size)
        return workload.PubSubProbe(where["topic"], size)

    # ----------------------------------------------------------------------------------------
    # Contenders

    def sluice_config(self, source: str, where: dict, out_topic: str, transform: str | None) -> Path:
        if source == "pulsar":
            source_toml = (
                f'kind = "pulsar"\nurl = "{self.brokers.pulsar_url}"\ntopic = "{where["topic"]}"\n'
                f'subscription = "{where["subscription"]}"\nsubscription_type = "failover"\n'
                'initial_position = "earliest"\n'
            )
        else:
            source_toml = (
                f'kind = "gcp_pubsub"\nproject = "{workload.PUBSUB_PROJECT}"\n'
                f'subscription = "{where["subscription"]}"\nendpoint = "http://{self.brokers.pubsub}"\n'
                'key_attribute = "key"\n'
            )
        transform_toml = ""
        if transform == "identity":
            transform_toml = f'[[pipeline.transform]]\ncomponent = "{self.args.guests}/passthrough.wasm"\n\n'
        elif transform == "redact":
            transform_toml = (
                f'[[pipeline.transform]]\ncomponent = "{self.args.guests}/redact.wasm"\n'
                'config = { fields = "email,phone" }\n\n'
            )
        config = (
            f'[[pipeline]]\nname = "bench"\n\n[pipeline.source]\n{source_toml}\n{transform_toml}'
            f'[pipeline.sink]\nkind = "kafka"\nbrokers = "{self.brokers.kafka}"\ntopic = "{out_topic}"\n'
        )
        path = self.work / f"{out_topic}.toml"
        path.write_text(config)
        return path

    def contender_argv(self, source: str, name: str, where: dict, out_topic: str) -> list[str]:
        if name.startswith("sluice-"):
            transform = {"sluice-passthrough": None, "sluice-identity": "identity", "sluice-redact": "redact"}[name]
            config = self.sluice_config(source, where, out_topic, transform)
            return [self.args.sluice, "run", "--config", str(config)]
        if name == "python-bridge":
            script = BENCH_DIR / "peers" / "pulsar_bridge.py"
            return [self.python, str(script), self.brokers.pulsar_url, where["topic"], where["subscription"],
                    self.brokers.kafka, out_topic]
        if name.startswith("quixstreams"):
            script = BENCH_DIR / "peers" / "quix_pubsub.py"
            fix = ["--release-leases"] if name == "quixstreams-lease-fix" else []
            return [self.python, str(script), *fix, workload.PUBSUB_PROJECT, where["topic"], where["subscription"],
                    self.brokers.kafka, out_topic, str(self.work / f"{out_topic}-quix-state")]
        raise ValueError(name)

    def run_contender(self, source: str, size: int, count: int, name: str) -> Row:
        tag = f"{source}-{size}-{name}"
        self.progress.stage(f"{source} {size} B {name}")
        out_topic = self.name(tag, "out")
        workload.create_kafka_topic(self.brokers, out_topic, PARTITIONS)
        where = self.prepare_source(source, tag, count, size)
        watcher = workload.KafkaProgress(self.brokers, out_topic, PARTITIONS)
        started = time.monotonic()
        argv = self.contender_argv(source, name, where, out_topic)
        profile = None
        if self.args.flamegraph and name.startswith("sluice-"):
            profile = Path(self.args.flamegraph) / f"{tag}.perf.data"
        if profile:
            profile.parent.mkdir(parents=True, exist_ok=True)
            argv = flamegraph.wrap(argv, profile)
        process = Watched(argv, self.work / f"{tag}.log")
        state = {"count": 0, "first": None, "moved_at": started}
        # A peer that stops moving is recorded as stalled (with what it moved); Sluice must not.
        stall_s = self.args.stall_seconds if not name.startswith("sluice-") else max(120, count / 100)

        def all_in_kafka() -> bool:
            now, seen = time.monotonic(), watcher.count()
            if seen > state["count"]:
                state["count"], state["moved_at"] = seen, now
            if state["first"] is None and seen > 0:
                state["first"] = (now, seen)
            first_at, first_count = state["first"] or (now, 0)
            rate = (seen - first_count) / (now - first_at) if now > first_at else 0
            self.progress.update(f"{seen:,}/{count:,} records in Kafka, {rate:,.0f} rec/s")
            return seen >= count or (state["first"] is not None and now - state["moved_at"] > stall_s)

        try:
            wait_for(all_in_kafka, max(120, count / 100), f"{tag}: moving {count} records", process)
            process.sample()
            moved, finished = state["count"], state["moved_at"]
            first_at, first_count = state["first"]
            if first_count <= moved // 2:
                rate = (moved - first_count) / max(finished - first_at, 1e-9)
            else:  # most records landed before the first poll saw any: count from the start
                rate = moved / (finished - started)
            row = Row(name, "contender", count, rate, startup_s=first_at - started, cpu_s=process.cpu_seconds)
            if moved >= count:
                self.measure_latency(source, size, where, out_topic, row, process)
            else:
                row.stalled_at = moved
        finally:
            process.stop()
            watcher.close()
        row.peak_rss_mib = process.peak_rss_bytes / 2**20
        if profile:
            self.progress.update("rendering the flame graph")
            svg = profile.with_suffix("").with_suffix(".svg")
            flamegraph.render(profile, svg, f"{name}, {source} → Kafka, {size} B, {count:,} records")
            self.progress.update(f"flame graph: {svg}")
        self.progress.update("reading the Kafka topic back")
        row.delivered, row.distinct = workload.read_back(self.brokers, out_topic, PARTITIONS)
        if row.delivered:
            row.distinct_rate = row.rate * row.distinct / row.delivered
        if row.stalled_at is not None:
            self.progress.done(f"stalled: {row.stalled_at:,} of {count:,} records moved, then none for {stall_s:.0f} s "
                               f"({row.rate:,.0f} rec/s until then)")
            return row
        if row.distinct != count:
            raise RuntimeError(f"{tag}: {count - row.distinct} of {count} records never reached Kafka")
        self.progress.done(
            f"{row.rate:,.0f} rec/s, p50 {row.latency_p50_ms:.1f} ms, p99 {row.latency_p99_ms:.1f} ms, "
            f"{row.cpu_s:.1f} CPU s, {row.peak_rss_mib:.0f} MiB"
        )
        return row

    def measure_latency(self, source: str, size: int, where: dict, out_topic: str, row: Row, process: Watched):
        rate, seconds = self.args.latency_rate, self.args.latency_seconds
        probes = int(rate * seconds)
        tail = workload.KafkaTail(self.brokers, out_topic, PARTITIONS)
        stop = threading.Event()

        def read_until_stopped() -> None:
            while not stop.is_set():
                tail.poll(0.1)

        reader = threading.Thread(target=read_until_stopped, daemon=True)
        tail.poll(1.0)  # assigned and positioned at the end before the first probe
        reader.start()
        probe = self.probe(source, where, size)
        started = time.monotonic()
        for i in range(probes):
            due = started + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            probe.send(workload.LATENCY_SEQ_BASE + i)
            if i % rate == 0:
                process.sample()
                self.progress.update(f"latency probes {i:,}/{probes:,} at {rate}/s")
        probe.close()
        deadline = time.monotonic() + 60
        while len(tail.latencies_ms) < probes and time.monotonic() < deadline:
            process.sample()
            self.progress.update(f"latency probes received {len(tail.latencies_ms):,}/{probes:,}")
            time.sleep(0.1)
        stop.set()
        reader.join()
        tail.close()
        latencies = sorted(tail.latencies_ms.values())
        row.latency_probes, row.latency_received = probes, len(latencies)
        if len(latencies) < probes:
            raise RuntimeError(f"{out_topic}: only {len(latencies)} of {probes} latency probes arrived in Kafka")
        row.latency_p50_ms = statistics.median(latencies)
        row.latency_p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]

    # ----------------------------------------------------------------------------------------
    # Ceilings

    def run_ceiling(self, label: str, argv: list[str], tag: str) -> Row:
        self.progress.stage(f"ceiling: {label}")
        out = self.work / f"{tag}.json"
        process = Watched(argv, self.work / f"{tag}.log", stdout=out)
        wait_for(lambda: process.exited() is not None, 900, label, tick=process.sample)
        process.sample()
        code = process.stop()
        if code != 0:
            raise RuntimeError(f"ceiling {label} failed ({code}); log: {process.log}")
        result = json.loads(out.read_text().strip().splitlines()[-1])
        rate = result["records"] / max(result["seconds"], 1e-9)
        row = Row(label, "ceiling", result["records"], rate, cpu_s=process.cpu_seconds,
                  peak_rss_mib=process.peak_rss_bytes / 2**20)
        self.progress.done(f"{row.rate:,.0f} rec/s")
        return row

    def kafka_ceiling(self, source: str, size: int, count: int) -> Row:
        """librdkafka's produce rate with the records and headers Sluice writes from `source`."""
        topic = self.name("kafka-ceiling", source, size, count)
        workload.create_kafka_topic(self.brokers, topic, PARTITIONS)
        script = str(BENCH_DIR / "peers" / "ceilings.py")
        argv = [self.python, script, "kafka-produce", self.brokers.kafka, topic, str(count), str(size), source]
        return self.run_ceiling("kafka produce (librdkafka)", argv, f"kafka-ceiling-{source}-{size}-{count}")

    def source_ceilings(self, source: str, size: int, count: int) -> list[Row]:
        script = str(BENCH_DIR / "peers" / "ceilings.py")
        tag = f"{source}-{size}-ceiling"
        self.progress.stage(f"ceiling: {source} consume")
        where = self.prepare_source(source, tag, count, size)
        if source == "pubsub":
            argv = [self.python, script, "pubsub-consume", workload.PUBSUB_PROJECT, where["subscription"], str(count)]
            return [self.run_ceiling("pubsub streaming pull (Python client)", argv, tag)]
        argv = [self.python, script, "pulsar-consume", self.brokers.pulsar_url, where["topic"], "ceiling", str(count)]
        return [self.run_ceiling("pulsar consume (C++ client)", argv, tag)]

    # ----------------------------------------------------------------------------------------

    def run(self) -> list[Group]:
        groups = []
        for size in self.args.sizes:
            for source in self.args.sources:
                count = self.args.records[source][size]
                group = Group(source, size, count)
                group.rows.append(self.kafka_ceiling(source, size, count))
                group.rows.extend(self.source_ceilings(source, size, count))
                for name in CONTENDERS[source]:
                    if self.args.contenders and name not in self.args.contenders:
                        continue
                    group.rows.append(self.run_contender(source, size, count, name))
                groups.append(group)
        return groups


def parse_counts(text: str) -> dict[str, dict[int, int]]:
    """`pulsar:100=100000,pulsar:1024=20000,pubsub:100=20000,...`"""
    counts: dict[str, dict[int, int]] = {}
    for item in text.split(","):
        where, count = item.split("=")
        source, size = where.split(":")
        counts.setdefault(source, {})[int(size)] = int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sluice", required=True, help="the sluice binary")
    parser.add_argument("--guests", required=True, help="directory with passthrough.wasm and redact.wasm")
    parser.add_argument("--sources", default="pulsar,pubsub", type=lambda s: s.split(","))
    parser.add_argument("--sizes", default="100,1024", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--records", type=parse_counts, required=True, help="source:size=N,...")
    parser.add_argument("--contenders", type=lambda s: s.split(","), help="only these (default: all)")
    parser.add_argument("--stall-seconds", type=float, default=75,
                        help="a peer moving nothing for this long is recorded as stalled")
    parser.add_argument("--latency-rate", type=int, default=5000, help="probes per second (issue 17 sets its p99 target at 5,000/s)")
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--out", required=True, help="directory for latest.{json,md,png}")
    parser.add_argument("--work", required=True, help="directory for configs and logs")
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument("--engine", help="criterion output directory (<target>/criterion), if run")
    parser.add_argument("--label", default="", help="what kind of run, for the report")
    parser.add_argument("--flamegraph", metavar="DIR",
                        help="profile each sluice contender with perf and write DIR/<source>-<size>-<name>.svg "
                             "(needs perf and inferno; CPU figures of such a run include perf's work)")
    parser.add_argument("--brokers", default="", help="what the brokers are, for the report")
    args = parser.parse_args()
    if args.flamegraph and flamegraph.missing_tools():
        parser.error(f"--flamegraph needs {', '.join(flamegraph.missing_tools())} on PATH "
                     "(apt install linux-perf; cargo install inferno)")

    bench = Bench(args)
    started = time.time()
    groups = bench.run()
    results = {
        "label": args.label,
        "brokers": args.brokers,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "seconds": time.time() - started,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "latency": {"rate": args.latency_rate, "seconds": args.latency_seconds},
        "sluice": args.sluice,
        "groups": [asdict(g) for g in groups],
    }
    import report

    if args.engine:
        results["engine"] = report.read_criterion(Path(args.engine))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write(results, out)
    print(f"results: {out / 'latest.md'}, {out / 'latest.png'} ({results['seconds']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
