"""Turns a run's results (latest.json) and criterion's estimates into latest.md and latest.png.

`python bench/report.py bench/results` re-renders both from bench/results/latest.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ENGINE_GROUPS = {
    "identity": ["empty-chain", "identity-guest", "identity-guest-0.1", "identity-native"],
    "redact": ["redact-guest", "redact-native"],
}
SOURCE_TITLES = {"pulsar": "Pulsar → Kafka", "pubsub": "Pub/Sub → Kafka"}
PEERS = {"pulsar": "python-bridge", "pubsub": "quixstreams"}


def read_criterion(directory: Path) -> dict:
    """ns per record by group, function and batch size, from criterion's mean estimates."""
    engine: dict = {}
    for group, functions in ENGINE_GROUPS.items():
        for function in functions:
            for estimates in sorted((directory / group / function).glob("*/new/estimates.json")):
                batch = int(estimates.parent.parent.name)
                mean_ns = json.loads(estimates.read_text())["mean"]["point_estimate"]
                engine.setdefault(group, {}).setdefault(function, {})[str(batch)] = mean_ns / batch
    return engine


def rows_by_name(group: dict) -> dict:
    return {row["name"]: row for row in group["rows"]}


def ceiling_of(group: dict) -> dict:
    """The lowest raw limit of the path: Kafka produce or the source's consume."""
    ceilings = [r for r in group["rows"] if r["kind"] == "ceiling"]
    return min(ceilings, key=lambda r: r["rate"])


def ceilings_by_end(group: dict) -> tuple[dict | None, dict | None]:
    """(Kafka produce ceiling, source consume ceiling) of a group, either None if not measured."""
    ceilings = [r for r in group["rows"] if r["kind"] == "ceiling"]
    kafka = next((r for r in ceilings if r["name"].startswith("kafka")), None)
    source = next((r for r in ceilings if not r["name"].startswith("kafka")), None)
    return kafka, source


def cpu_us_per_record(row: dict) -> float | None:
    return row["cpu_s"] * 1e6 / row["records"] if row.get("cpu_s") is not None else None


def end_to_end_targets(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """Issue 17's end-to-end targets, for every group this run measured."""
    found = []
    latency_rate = results["latency"]["rate"]
    for group in results["groups"]:
        rows, where = rows_by_name(group), f"{SOURCE_TITLES[group['source']]}, {group['size']} B"
        passthrough, identity = rows.get("sluice-passthrough"), rows.get("sluice-identity")
        if passthrough:
            lower = ceiling_of(group)
            ratio = passthrough["rate"] / lower["rate"]
            found.append(("pass-through ≥ 85 % of the lower ceiling", where, f"{ratio:.0%} of {lower['name']}",
                          ratio >= 0.85))
        if passthrough and identity:
            ratio = identity["rate"] / passthrough["rate"]
            found.append(("identity guest ≥ 90 % of pass-through", where, f"{ratio:.0%}", ratio >= 0.9))
        peer = rows.get(PEERS[group["source"]])
        if passthrough and peer and cpu_us_per_record(peer) and cpu_us_per_record(passthrough) is not None:
            ours, theirs = cpu_us_per_record(passthrough), cpu_us_per_record(peer)
            found.append((f"CPU per record ≤ ¼ of {peer['name']}", where,
                          f"{ours:,.1f} vs {theirs:,.1f} µs = {ours / theirs:.2f}×", ours / theirs <= 0.25))
        for row in [r for r in (passthrough, identity) if r and r.get("latency_p99_ms") is not None]:
            met = row["latency_p99_ms"] <= 50 if latency_rate >= 5000 else None
            found.append((f"{row['name']} p99 ≤ 50 ms at 5,000 rec/s", where,
                          f"{row['latency_p99_ms']:.1f} ms at {latency_rate:,}/s", met))
        for row in [r for r in (passthrough, identity) if r and r.get("peak_rss_mib") is not None]:
            found.append((f"{row['name']} peak RSS < 150 MiB", where, f"{row['peak_rss_mib']:.0f} MiB",
                          row["peak_rss_mib"] < 150))
    return found


def engine_targets(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """Issue 17's engine targets at batch 100, if criterion ran."""
    found = []
    identity = results.get("engine", {}).get("identity", {})
    redact = results.get("engine", {}).get("redact", {})
    at_100 = {name: cases["100"] for name, cases in {**identity, **redact}.items() if "100" in cases}
    if "empty-chain" in at_100:
        found.append(("empty chain ≤ 100 ns/record", "engine, batch 100", f"{at_100['empty-chain']:,.0f} ns",
                      at_100["empty-chain"] <= 100))
    if "identity-guest" in at_100:
        found.append(("identity guest (0.2.0) ≤ 250 ns/record", "engine, batch 100",
                      f"{at_100['identity-guest']:,.0f} ns", at_100["identity-guest"] <= 250))
    if "redact-guest" in at_100 and "redact-native" in at_100:
        guest, native = at_100["redact-guest"], at_100["redact-native"]
        found.append(("redact guest ≤ 2× its native twin", "engine, batch 100",
                      f"{guest / native:.2f}× ({guest:,.0f} vs {native:,.0f} ns)", guest / native <= 2))
    return found


def targets(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, where, measured, met) for every target of issue 17 this run measured; met is
    None where the run's conditions differ from the target's (e.g. another latency rate)."""
    return engine_targets(results) + end_to_end_targets(results)


def fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def summary(results: dict) -> list[str]:
    """records/s of every contender and the ceiling, one column per source and size."""
    groups = results["groups"]
    names = []
    for group in groups:
        names += [r["name"] for r in group["rows"] if r["kind"] == "contender" and r["name"] not in names]
    lines = [
        "| records/s | " + " | ".join(f"{SOURCE_TITLES[g['source']]}, {g['size']} B" for g in groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for name in names:
        cells = []
        for group in groups:
            row = rows_by_name(group).get(name)
            cell = "–" if row is None else f"{row['rate']:,.0f}"
            if row and row.get("stalled_at") is not None:
                cell += f" (stalls at {row['stalled_at']:,})"
            elif row and row.get("delivered") and row["delivered"] > row["distinct"]:
                distinct_rate = row.get("distinct_rate") or row["rate"] * row["distinct"] / row["delivered"]
                cell += f" ({distinct_rate:,.0f} distinct/s; {row['delivered'] - row['distinct']:,} dups)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ceilings = [ceiling_of(g) for g in groups]
    lines.append("| *ceiling* | " + " | ".join(f"{c['rate']:,.0f} ({c['name'].split(' (')[0]})" for c in ceilings) + " |")
    return lines


def markdown(results: dict) -> str:
    lines = [
        f"# Sluice benchmark ({results['label'] or 'run'}, {results['started']})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, load average at the end "
        f"{', '.join(f'{x:.1f}' for x in results['machine']['load_avg_at_end'])}; the whole run took "
        f"{results['seconds']:.0f} s. Brokers: {results.get('brokers') or 'the local brokers'}, all on "
        "127.0.0.1. Other work shared the CPUs: compare ratios within this run, not absolute figures "
        "across runs.",
        "",
    ]
    lines += ["## Summary: records/s into Kafka", "", *summary(results), ""]
    engine = results.get("engine")
    if engine:
        batches = sorted({int(b) for group in engine.values() for f in group.values() for b in f})
        lines += [
            "## Transform engine alone (ns per record, criterion mean; 100 B JSON values)",
            "",
            "| | " + " | ".join(f"batch {b}" for b in batches) + " |",
            "|---|" + "---:|" * len(batches),
        ]
        for group in engine.values():
            for function, per_batch in group.items():
                cells = [fmt(per_batch.get(str(b)), ",.0f") for b in batches]
                lines.append(f"| {function} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## End to end: N pre-loaded records into Kafka",
        "",
        f"Latency: probes published one at a time at {results['latency']['rate']}/s for "
        f"{results['latency']['seconds']:g} s while the contender runs; publish call → read by a "
        "Kafka consumer tailing the topic. CPU seconds: the contender's processes while moving the "
        "N records (start-up included). distinct/s: records/s × distinct / landed (a contender "
        "writing duplicates lands records faster than it moves distinct ones). × ceiling: against "
        "the lower of librdkafka's own produce rate (same records and headers) and the source's "
        "own consume rate.",
        "",
    ]
    for group in results["groups"]:
        contenders = [r for r in group["rows"] if r["kind"] == "contender"]
        best = max((r["rate"] for r in contenders), default=0)
        ceiling = ceiling_of(group)
        kafka, source = ceilings_by_end(group)
        lines += [
            f"### {SOURCE_TITLES[group['source']]}, {group['size']} B values, {group['records']:,} records",
            "",
            "| contender | records/s | distinct/s | × best | × ceiling | × Kafka | × source | p50 ms | p99 ms "
            "| CPU s | CPU µs/record | peak RSS MiB | start-up s | in Kafka (distinct) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in group["rows"]:
            name = row["name"] if row["kind"] == "contender" else f"*ceiling: {row['name']}*"
            per_record = cpu_us_per_record(row)
            per_end = [fmt(row["rate"] / end["rate"] if end else None, ".2f") for end in (kafka, source)]
            landed = f"{row['delivered']:,} ({row['distinct']:,})" if row["delivered"] is not None else "–"
            if row.get("stalled_at") is not None:
                landed += f", **stalled** after {row['stalled_at']:,}"
            lines.append(
                f"| {name} | {row['rate']:,.0f} | {fmt(row.get('distinct_rate'), ',.0f')} | "
                f"{fmt(row['rate'] / best if row['kind'] == 'contender' and best else None, '.2f')} | "
                f"{row['rate'] / ceiling['rate']:.2f} | {per_end[0]} | {per_end[1]} | "
                f"{fmt(row['latency_p50_ms'], '.1f')} | "
                f"{fmt(row['latency_p99_ms'], '.1f')} | {fmt(row['cpu_s'], '.1f')} | {fmt(per_record, ',.0f')} | "
                f"{fmt(row['peak_rss_mib'], '.0f')} | {fmt(row['startup_s'], '.1f')} | {landed} |"
            )
        lines.append("")
    found = targets(results)
    if found:
        lines += ["## Targets (issue 17)", "", "| target | where | measured | met |", "|---|---|---|---|"]
        verdict = {True: "yes", False: "**no**", None: "not at the target's conditions"}
        for target, where, measured, met in found:
            lines.append(f"| {target} | {where} | {measured} | {verdict[met]} |")
        lines.append("")
    lines += ["![throughput and latency](latest.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = results["groups"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    labels = [f"{SOURCE_TITLES[g['source']]}\n{g['size']} B" for g in groups]
    names = []
    for group in groups:
        for row in group["rows"]:
            if row["kind"] == "contender" and row["name"] not in names:
                names.append(row["name"])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, rates, p50s, p99s = [], [], [], []
        for x, group in enumerate(groups):
            row = rows_by_name(group).get(name)
            if row:
                xs.append(x + (i - (len(names) - 1) / 2) * width)
                rates.append(row["rate"])
                p50s.append(row["latency_p50_ms"])
                p99s.append(row["latency_p99_ms"])
        top.bar(xs, rates, width, label=name, color=f"C{i}")
        measured = [(x, p50, p99) for x, p50, p99 in zip(xs, p50s, p99s) if p50 is not None]
        if measured:
            lx, l50, l99 = zip(*measured)
            bottom.bar(lx, l99, width, color=f"C{i}", alpha=0.35)
            bottom.bar(lx, l50, width, color=f"C{i}", label=name)
    for x, group in enumerate(groups):
        ceiling = ceiling_of(group)
        top.hlines(ceiling["rate"], x - 0.45, x + 0.45, colors="black", linestyles="dashed",
                   label="ceiling (lower of Kafka produce, source consume)" if x == 0 else None)
    top.set_ylabel("records/s into Kafka")
    top.set_xticks(range(len(groups)), labels)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    top.set_title("Throughput: N pre-loaded records (higher is better)")
    bottom.set_ylabel("ms")
    bottom.set_yscale("log")
    bottom.set_xticks(range(len(groups)), labels)
    bottom.set_title(f"Latency publish → Kafka at {results['latency']['rate']}/s: p50 (solid), p99 (light)")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(results: dict, out: Path) -> None:
    (out / "latest.md").write_text(markdown(results))
    plot(results, out / "latest.png")


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    write(json.loads((directory / "latest.json").read_text()), directory)
